"""Channels at the outbound HTTP seam (pytest-httpx): signatures, retries, Slack's answers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pytest_httpx import HTTPXMock

from helio_proxy.approvals.channels import ChannelContext, DeliveryError, build_channels
from helio_proxy.approvals.channels.slack import SlackNotifier
from helio_proxy.approvals.channels.webhook import WebhookNotifier, sign, verify
from helio_proxy.approvals.model import TicketStatus
from helio_proxy.approvals.slack_actions import slack_signature, verify_slack
from helio_proxy.config.approval import ApprovalConfig, SlackChannel, WebhookChannel
from tests.unit.approvals.factories import ticket

HOOK = "https://hooks.example/helio?token=abc"
SLACK_API = "https://slack.test/api"


@pytest.fixture
async def context() -> AsyncIterator[ChannelContext]:
    async with httpx.AsyncClient() as http:
        yield ChannelContext(http, backoff=0.001)


def test_the_webhook_signature_covers_timestamp_and_body() -> None:
    body = b'{"event":"approval_requested"}'
    header = sign("k", 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert verify("k", header, body, now=1_700_000_100)
    assert not verify("k", header, body + b" ", now=1_700_000_100)
    assert not verify("other", header, body, now=1_700_000_100)
    assert not verify("k", header, body, now=1_700_000_301)  # too old: a replay
    assert not verify("k", "garbage", body, now=1_700_000_000)
    assert not verify("k", None, body)


async def test_a_failing_webhook_is_retried_with_fresh_signatures(
    httpx_mock: HTTPXMock, context: ChannelContext
) -> None:
    httpx_mock.add_response(url=HOOK, status_code=500)
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=HOOK)
    httpx_mock.add_response(url=HOOK, status_code=204)
    notifier = WebhookNotifier(WebhookChannel(type="webhook", url=HOOK, secret="k"), context)
    made = ticket()
    await notifier.requested(made, escalation=False)
    sent = httpx_mock.get_requests()
    assert len(sent) == 3
    for request in sent:
        assert verify("k", request.headers["x-helio-signature"], request.content)
        assert json.loads(request.content) == {
            "event": "approval_requested",
            "ticket": made.to_json(),
            "escalation": False,
        }


async def test_a_webhook_that_keeps_failing_raises_without_leaking_its_url(
    httpx_mock: HTTPXMock, context: ChannelContext
) -> None:
    httpx_mock.add_response(url=HOOK, status_code=503, is_reusable=True)
    notifier = WebhookNotifier(WebhookChannel(type="webhook", url=HOOK), context)
    with pytest.raises(DeliveryError) as caught:
        await notifier.resolved(ticket(), [])
    assert len(httpx_mock.get_requests()) == 3
    assert "HTTP 503" in str(caught.value)
    assert "token=abc" not in str(caught.value)
    assert "x-helio-signature" not in httpx_mock.get_requests()[0].headers


async def test_a_client_error_is_not_retried(httpx_mock: HTTPXMock, context: ChannelContext) -> None:
    httpx_mock.add_response(url=HOOK, status_code=404)
    notifier = WebhookNotifier(WebhookChannel(type="webhook", url=HOOK), context)
    with pytest.raises(DeliveryError, match="HTTP 404"):
        await notifier.requested(ticket(), escalation=True)
    assert len(httpx_mock.get_requests()) == 1


def _slack(**changes: object) -> SlackChannel:
    return SlackChannel.model_validate(
        {
            "type": "slack",
            "bot_token": "xoxb-1",
            "signing_secret": "s",
            "channel": "C1",
            "api_base": SLACK_API,
            **changes,
        }
    )


async def test_slack_posts_buttons_and_updates_every_message_it_posted(
    httpx_mock: HTTPXMock, context: ChannelContext
) -> None:
    httpx_mock.add_response(
        url=f"{SLACK_API}/chat.postMessage", json={"ok": True, "channel": "C1", "ts": "1.5"}
    )
    httpx_mock.add_response(url=f"{SLACK_API}/chat.update", json={"ok": True}, is_reusable=True)
    notifier = SlackNotifier(_slack(), context)
    made = ticket()
    delivery = await notifier.requested(made, escalation=False)
    assert delivery == {"channel": "C1", "ts": "1.5"}
    await notifier.resolved(
        ticket(id=made.id, status=TicketStatus.DENIED, resolved_by="bob"),
        [{"channel": "C1", "ts": "1.5"}, {"channel": "C1", "ts": "2.5"}],
    )
    post, *updates = httpx_mock.get_requests()
    assert post.headers["authorization"] == "Bearer xoxb-1"
    actions = [b for b in json.loads(post.content)["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [
        f"helio_approve:{made.id}",
        f"helio_deny:{made.id}",
    ]
    assert [json.loads(u.content)["ts"] for u in updates] == ["1.5", "2.5"]
    assert "Denied* by bob" in json.dumps(json.loads(updates[0].content)["blocks"])


async def test_slack_answering_ok_false_is_a_delivery_failure(
    httpx_mock: HTTPXMock, context: ChannelContext
) -> None:
    httpx_mock.add_response(
        url=f"{SLACK_API}/chat.postMessage", json={"ok": False, "error": "channel_not_found"}
    )
    with pytest.raises(DeliveryError, match="channel_not_found"):
        await SlackNotifier(_slack(), context).requested(ticket(), escalation=False)
    assert len(httpx_mock.get_requests()) == 1


def test_slack_callbacks_are_verified_with_the_v0_scheme_and_a_five_minute_window() -> None:
    body = b"payload=%7B%7D"
    now = time.time()
    stamp = str(int(now))
    good = slack_signature("secret", stamp, body)
    assert good.startswith("v0=")
    assert verify_slack("secret", stamp, good, body, now)
    assert not verify_slack("other", stamp, good, body, now)
    assert not verify_slack("secret", stamp, good, body + b"x", now)
    assert not verify_slack("secret", stamp, good, body, now + 301)
    assert not verify_slack("secret", stamp, good, body, now - 301)
    assert not verify_slack("secret", None, good, body, now)
    assert not verify_slack("secret", "soon", good, body, now)


async def test_channels_are_found_by_name_or_type_and_the_dashboard_is_always_there(
    context: ChannelContext,
) -> None:
    config = ApprovalConfig.model_validate(
        {
            "channels": [
                {"type": "webhook", "name": "finance", "url": HOOK},
                {"type": "slack", "bot_token": "x", "signing_secret": "s", "channel": "C1"},
            ]
        }
    )
    channels = build_channels(config, context)
    assert sorted(channels) == ["dashboard", "finance", "slack"]
    assert isinstance(channels["finance"], WebhookNotifier)
    assert await channels["dashboard"].requested(ticket(), escalation=False) is None


async def test_slack_and_webhook_messages_name_the_upstream_the_call_was_sent_to(
    httpx_mock: HTTPXMock, context: ChannelContext
) -> None:
    httpx_mock.add_response(
        url=f"{SLACK_API}/chat.postMessage", json={"ok": True, "channel": "C1", "ts": "1"}
    )
    httpx_mock.add_response(url=HOOK, status_code=204)
    made = ticket(upstream="prod")
    await SlackNotifier(_slack(), context).requested(made, escalation=False)
    await WebhookNotifier(WebhookChannel(type="webhook", url=HOOK), context).requested(made, escalation=False)
    posted, hooked = httpx_mock.get_requests()
    message = json.loads(posted.content)
    assert message["text"].startswith("Approval requested for prod/pay ")
    fields = [f["text"] for b in message["blocks"] if b["type"] == "section" for f in b.get("fields", [])]
    assert "*Upstream*\n`prod`" in fields
    assert json.loads(hooked.content)["ticket"]["upstream"] == "prod"


async def test_webhook_url_credentials_become_a_basic_header_and_never_appear_in_a_failure(
    httpx_mock: HTTPXMock, context: ChannelContext
) -> None:
    bare = "https://hooks.example/helio?token=abc"
    httpx_mock.add_response(url=bare, status_code=502)
    httpx_mock.add_response(url=bare, status_code=502)
    # An HTTP library's message quoting the URL as it was configured.
    httpx_mock.add_exception(
        httpx.ConnectError("cannot reach https://al%40ice:s3cret@hooks.example"), url=bare
    )
    url = "https://al%40ice:s3cret@hooks.example/helio?token=abc"
    notifier = WebhookNotifier(WebhookChannel(type="webhook", url=url), context)
    with pytest.raises(DeliveryError) as caught:
        await notifier.requested(ticket(), escalation=False)
    sent = httpx_mock.get_requests()
    assert [str(r.url) for r in sent] == [bare] * 3
    assert {r.headers["authorization"] for r in sent} == {"Basic YWxAaWNlOnMzY3JldA=="}  # al@ice:s3cret
    assert str(caught.value) == (
        "webhook 'webhook' (https://hooks.example): ConnectError: cannot reach https://hooks.example "
        "(after 3 attempt(s))"
    )
    assert notifier.description == "webhook 'webhook' (https://hooks.example)"
