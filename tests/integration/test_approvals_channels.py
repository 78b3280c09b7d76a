"""Channels against local fake receivers: a webhook endpoint and a fake Slack Web API, both real
HTTP servers on loopback; Slack's button callbacks are signed the way Slack signs them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx
from starlette.responses import JSONResponse

from helio_proxy.app import HelioApp
from tests.harness import mcp_upstream, run_proxy
from tests.integration.approval_support import (
    BOB,
    Receiver,
    approval_config,
    decide,
    held_ticket,
    raw_call,
    records,
    ticket_status,
    wait_until,
)

PAYMENT = {"amount": 12, "recipient": "acme"}
HOOK_SECRET = "whsec-test-0123456789"
SIGNING_SECRET = "slack-signing-secret-0123"


def _valid_helio_signature(header: str, body: bytes) -> bool:
    """The documented receiver check: ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(HOOK_SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) < 300


async def test_a_webhook_gets_a_signed_ticket_then_a_signed_resolution(tmp_path: Path) -> None:
    receiver = Receiver()
    async with (
        receiver.serve(lambda path, body: JSONResponse({"ok": True})) as hook,
        mcp_upstream(stateless=True) as upstream,
    ):
        policies = """
policies:
  rules:
    - name: approve-payments
      match: {tool: create_payment}
      action: require_approval
      approval: {channel: finance, timeout: 1m}
approval:
  channels:
    - {type: webhook, name: finance, url: 'HOOK/hook', secret: 'SECRET'}
""".replace("HOOK", hook).replace("SECRET", HOOK_SECRET)
        async with run_proxy(approval_config(upstream, policies)) as app:
            call = asyncio.create_task(raw_call(app.mcp_url, "create_payment", PAYMENT))
            ticket = await held_ticket(app)
            await wait_until(lambda: len(receiver.requests) == 1)
            # The receiver's system decides through the REST API.
            await decide(app, ticket["id"], "deny", BOB, {"reason": "over budget"})
            async with asyncio.timeout(10):
                answer = await call
            await wait_until(lambda: len(receiver.requests) == 2)
    assert answer["error"]["data"]["reason"] == "approval_denied"
    requested, resolved = receiver.bodies()
    assert requested["event"] == "approval_requested"
    assert requested["ticket"]["id"] == ticket["id"]
    assert requested["ticket"]["tool_input"] == PAYMENT
    assert requested["escalation"] is False
    assert resolved["event"] == "approval_resolved"
    assert (resolved["ticket"]["status"], resolved["ticket"]["denial_reason"]) == ("denied", "over budget")
    for _, headers, body in receiver.requests:
        assert _valid_helio_signature(headers["x-helio-signature"], body)
        assert headers["content-type"] == "application/json"


async def test_escalation_notifies_the_delegates_and_is_recorded() -> None:
    receiver = Receiver()
    async with (
        receiver.serve(lambda path, body: JSONResponse({"ok": True})) as hook,
        mcp_upstream(stateless=True) as upstream,
    ):
        policies = """
policies:
  rules:
    - name: approve-payments
      match: {tool: create_payment}
      action: require_approval
      approval: {timeout: 1m, escalation_after: 1s, delegates: [oncall]}
approval:
  channels:
    - {type: webhook, name: oncall, url: 'HOOK/oncall'}
""".replace("HOOK", hook)
        async with run_proxy(approval_config(upstream, policies)) as app:
            call = asyncio.create_task(raw_call(app.mcp_url, "create_payment", PAYMENT))
            ticket = await held_ticket(app)
            assert receiver.requests == []  # the primary channel is the dashboard
            await wait_until(lambda: len(receiver.requests) == 1)
            escalated = await app.approvals.get(ticket["id"])
            await decide(app, ticket["id"], "approve", BOB)
            async with asyncio.timeout(10):
                answer = await call
    assert answer["result"]["isError"] is False
    [notice] = receiver.bodies()[:1]
    assert (notice["event"], notice["escalation"]) == ("approval_requested", True)
    assert "x-helio-signature" not in receiver.requests[0][1]  # no secret configured
    assert escalated is not None
    assert escalated.escalated_at is not None
    assert escalated.escalated_to == ("oncall",)


def _slack_callback(
    user: str, action_id: str, *, secret: str = SIGNING_SECRET, age: int = 0
) -> tuple[bytes, dict[str, str]]:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "actions": [{"action_id": action_id}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()) - age)
    mac = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return body, {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": f"v0={mac}",
    }


async def test_slack_buttons_decide_tickets_and_forged_callbacks_are_rejected(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    slack = Receiver()

    def api(path: str, body: bytes) -> JSONResponse:
        return JSONResponse({"ok": True, "channel": "C42", "ts": "1700000000.000100"})

    async with slack.serve(api) as fake_slack, mcp_upstream(stateless=True) as upstream:
        policies = """
policies:
  rules:
    - name: approve-payments
      match: {tool: create_payment}
      action: require_approval
      approval: {channel: slack, timeout: 1m}
approval:
  channels:
    - {type: slack, bot_token: xoxb-test, signing_secret: 'SIGNING', channel: '#approvals',
       approvers: [U1], api_base: 'SLACK/api'}
""".replace("SIGNING", SIGNING_SECRET).replace("SLACK", fake_slack)
        async with run_proxy(approval_config(upstream, policies, audit_path=str(db))) as app:
            actions = app.mcp_url.removesuffix("/mcp") + "/slack/actions"
            call = asyncio.create_task(raw_call(app.mcp_url, "create_payment", PAYMENT))
            ticket = await held_ticket(app)
            await wait_until(lambda: len(slack.requests) == 1)
            approve = f"helio_approve:{ticket['id']}"
            async with httpx.AsyncClient() as http:
                body, headers = _slack_callback("U1", approve, secret="wrong")
                forged = await http.post(actions, content=body, headers=headers)
                body, headers = _slack_callback("U1", approve, age=301)
                stale = await http.post(actions, content=body, headers=headers)
                body, headers = _slack_callback("U1", approve)
                tampered = await http.post(actions, content=body.replace(b"U1", b"U9"), headers=headers)
                body, headers = _slack_callback("U2", approve)
                outsider = await http.post(actions, content=body, headers=headers)
                still = await app.approvals.get(ticket["id"])
                body, headers = _slack_callback("U1", approve)
                pressed = await http.post(actions, content=body, headers=headers)
            async with asyncio.timeout(10):
                answer = await call
            await wait_until(lambda: len(slack.requests) == 2)
            await ticket_status(app, ticket["id"], "consumed")
    assert [r.status_code for r in (forged, stale, tampered)] == [401, 401, 401]
    assert forged.json() == stale.json() == {"error": "unauthorized"}
    assert outsider.status_code == 200
    assert still is not None
    assert still.status.value == "pending"
    assert pressed.status_code == 200
    assert answer["result"]["isError"] is False

    (post_path, post_headers, post_body), (update_path, _, update_body) = slack.requests
    assert post_path == "/api/chat.postMessage"
    assert post_headers["authorization"] == "Bearer xoxb-test"
    message = json.loads(post_body)
    assert message["channel"] == "#approvals"
    buttons = [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == [f"helio_approve:{ticket['id']}", f"helio_deny:{ticket['id']}"]
    assert update_path == "/api/chat.update"
    update = json.loads(update_body)
    assert (update["channel"], update["ts"]) == ("C42", "1700000000.000100")
    assert "Approved" in json.dumps(update["blocks"])
    assert all(b["type"] != "actions" for b in update["blocks"])
    [record] = records(db)
    assert record["approved_by"] == "slack:U1"


SHARED_SLACK = """
policies:
  rules:
    - name: approve-emails
      match: {tool: send_email}
      action: require_approval
      approval: {channel: slack-ops, timeout: 1m}
    - name: approve-deletions
      match: {tool: delete_user}
      action: require_approval
      approval: {channel: finance, timeout: 1m}
    - name: approve-payments
      match: {tool: create_payment}
      action: require_approval
      approval: {channel: slack-ops, timeout: 1m, escalation_after: 1s, delegates: [slack-dev]}
approval:
  channels:
    # One Slack app (one signing secret) posting to two Slack channels with different approvers.
    - {type: slack, name: slack-dev, bot_token: xoxb-test, signing_secret: 'SIGNING', channel: '#dev',
       approvers: [U2], api_base: 'SLACK/api'}
    - {type: slack, name: slack-ops, bot_token: xoxb-test, signing_secret: 'SIGNING', channel: '#ops',
       approvers: [U1], api_base: 'SLACK/api'}
    - {type: webhook, name: finance, url: 'SLACK/hook'}
"""


@asynccontextmanager
async def _shared_secret_proxy(tmp_path: Path) -> AsyncIterator[tuple[HelioApp, Receiver]]:
    slack = Receiver()

    def api(path: str, body: bytes) -> JSONResponse:
        return JSONResponse({"ok": True, "channel": "C42", "ts": "1700000000.000100"})

    async with slack.serve(api) as fake_slack, mcp_upstream(stateless=True) as upstream:
        policies = SHARED_SLACK.replace("SIGNING", SIGNING_SECRET).replace("SLACK", fake_slack)
        config = approval_config(upstream, policies, audit_path=str(tmp_path / "audit.db"))
        async with run_proxy(config) as app:
            yield app, slack


async def _press(app: HelioApp, user: str, action_id: str) -> httpx.Response:
    body, headers = _slack_callback(user, action_id)
    async with httpx.AsyncClient() as http:
        return await http.post(
            app.mcp_url.removesuffix("/mcp") + "/slack/actions", content=body, headers=headers
        )


async def test_a_slack_press_decides_only_tickets_sent_to_a_channel_whose_approvers_include_the_user(
    tmp_path: Path,
) -> None:
    async with _shared_secret_proxy(tmp_path) as (app, _):
        email = asyncio.create_task(raw_call(app.mcp_url, "send_email", {"to": "a@b.c", "body": "hi"}))
        ops_ticket = await held_ticket(app)
        deletion = asyncio.create_task(raw_call(app.mcp_url, "delete_user", {"user_id": "u-1"}, request_id=2))
        webhook_ticket = await held_ticket(app, 2)
        assert (ops_ticket["channel_name"], webhook_ticket["channel_name"]) == ("slack-ops", "finance")

        # U2 approves for slack-dev, which shares the signing secret but was not asked.
        outsider = await _press(app, "U2", f"helio_approve:{ops_ticket['id']}")
        # A signed press for a ticket no Slack channel was asked about: refused like a forgery.
        on_webhook = await _press(app, "U2", f"helio_approve:{webhook_ticket['id']}")
        on_webhook_by_ops = await _press(app, "U1", f"helio_deny:{webhook_ticket['id']}")
        still = [await app.approvals.get(t["id"]) for t in (ops_ticket, webhook_ticket)]

        approver = await _press(app, "U1", f"helio_approve:{ops_ticket['id']}")
        async with asyncio.timeout(10):
            sent = await email
        await decide(app, webhook_ticket["id"], "deny", BOB, {"reason": "test over"})
        async with asyncio.timeout(10):
            deleted = await deletion
    assert (outsider.status_code, outsider.json()["ok"]) == (200, False)
    assert [r.status_code for r in (on_webhook, on_webhook_by_ops)] == [401, 401]
    assert on_webhook.json() == on_webhook_by_ops.json() == {"error": "unauthorized"}
    assert [t.status.value if t else None for t in still] == ["pending", "pending"]
    assert [d.by for t in still if t for d in t.decisions] == []
    assert approver.json() == {"ok": True}
    assert sent["result"]["isError"] is False
    assert deleted["error"]["data"]["reason"] == "approval_denied"
    [email_record] = [r for r in records(tmp_path / "audit.db") if r["tool_name"] == "send_email"]
    assert email_record["approved_by"] == "slack:U1"


async def test_a_delegate_channels_approver_can_decide_from_slack_once_the_ticket_escalated(
    tmp_path: Path,
) -> None:
    async with _shared_secret_proxy(tmp_path) as (app, slack):
        payment = asyncio.create_task(raw_call(app.mcp_url, "create_payment", PAYMENT))
        ticket = await held_ticket(app)
        early = await _press(app, "U2", f"helio_approve:{ticket['id']}")
        before = await app.approvals.get(ticket["id"])
        await wait_until(lambda: len(slack.requests) == 2)  # #ops, then #dev at escalation
        escalated = await app.approvals.get(ticket["id"])
        late = await _press(app, "U2", f"helio_approve:{ticket['id']}")
        async with asyncio.timeout(10):
            paid = await payment
    assert (early.status_code, early.json()["ok"]) == (200, False)
    assert before is not None
    assert (before.status.value, before.escalated_at, before.decisions) == ("pending", None, ())
    assert escalated is not None
    assert escalated.escalated_to == ("slack-dev",)
    assert [json.loads(body)["channel"] for _, _, body in slack.requests[:2]] == ["#ops", "#dev"]
    assert late.json() == {"ok": True}
    assert paid["result"]["isError"] is False
    [record] = [r for r in records(tmp_path / "audit.db") if r["tool_name"] == "create_payment"]
    assert record["approved_by"] == "slack:U2"
