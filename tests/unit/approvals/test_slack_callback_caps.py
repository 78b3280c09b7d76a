"""A signed Slack callback whose payload breaks a JSON cap is refused with 400, never a 500
(issue 16: a payload nested thousands deep raised RecursionError)."""

from __future__ import annotations

import time
from typing import Any, cast
from urllib.parse import urlencode

import httpx
import pytest

from helio_proxy.approvals.slack_actions import SLACK_ACTIONS_PATH, SlackActions, slack_signature
from helio_proxy.config.approval import SlackChannel

SECRET = "slack-signing-secret-0123"


def _channel() -> SlackChannel:
    return SlackChannel.model_validate(
        {"type": "slack", "bot_token": "xoxb-1", "signing_secret": SECRET, "channel": "#approvals"}
    )


@pytest.mark.parametrize(
    "payload",
    ["[" * 5_000 + "]" * 5_000, "[" + "0," * 20_000 + "0]"],
    ids=["deep", "wide array"],
)
async def test_a_signed_callback_past_a_json_cap_is_400(payload: str) -> None:
    actions = SlackActions(cast(Any, None), [_channel()])  # refused before the service is used
    body = urlencode({"payload": payload}).encode()
    timestamp = str(int(time.time()))
    headers = {
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": slack_signature(SECRET, timestamp, body),
        "content-type": "application/x-www-form-urlencoded",
    }
    transport = httpx.ASGITransport(app=actions)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post(SLACK_ACTIONS_PATH, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "not a Slack block_actions payload"}
