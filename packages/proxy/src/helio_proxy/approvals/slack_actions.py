"""``POST /slack/actions`` on the MCP port: Slack's Approve/Deny button callbacks.

Slack signs every request with the app's signing secret (its "v0" scheme): the
``X-Slack-Signature`` header is ``v0=`` + hex HMAC-SHA256 of ``v0:<X-Slack-Request-Timestamp>:<raw
body>``. A request whose signature matches no configured Slack channel, or whose timestamp is more
than :data:`SLACK_WINDOW` seconds away from now, gets an opaque 401 (and a rate-limited warning in
the log).

A verified press decides only a ticket that was sent to a Slack channel it verifies for: the
ticket's own channel, or, once the ticket has escalated, a channel it escalated to. Several
channels may share one Slack app's signing secret, so a signature alone says "some channel of
this app", not which one; a press for a ticket none of its channels was asked about (another
Slack channel's, a webhook's, the dashboard's) gets the same opaque 401 and decides nothing.
Among the channels that qualify, ``approvers`` allowlists apply: a press by anyone they do not
list changes nothing. A decision is recorded as ``slack:<user id>``. Break-glass is never offered
in Slack.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, cast
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from helio_proxy import jsonlimits
from helio_proxy.approvals.channels.slack import APPROVE_PREFIX, DENY_PREFIX
from helio_proxy.approvals.model import Ticket, TicketConflict, TicketNotFound, Verdict
from helio_proxy.approvals.service import ApprovalService
from helio_proxy.config.approval import SlackChannel

log = logging.getLogger("helio_proxy.approvals.slack")

SLACK_ACTIONS_PATH: Final = "/slack/actions"
SLACK_WINDOW: Final = 300
"""Seconds a callback's timestamp may differ from now (Slack's recommended 5 minutes)."""
MAX_CALLBACK_BYTES: Final = 1 << 20
WARNING_EVERY: Final = 60.0
"""At most one warning about rejected callbacks per this many seconds."""


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` Slack sends for ``body`` at ``timestamp``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_slack(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> bool:
    """Whether a callback is signed with ``secret`` and fresh."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > SLACK_WINDOW:
        return False
    return hmac.compare_digest(slack_signature(secret, timestamp, body).encode(), signature.encode())


class SlackActions:
    """The ASGI endpoint; mounted on the MCP listener only when a Slack channel is configured."""

    def __init__(
        self,
        service: ApprovalService,
        channels: Sequence[SlackChannel],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.channels = list(channels)
        self.clock = clock
        self._warned_at = float("-inf")
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await JSONResponse({"error": "method not allowed"}, 405, {"allow": "POST"})(scope, receive, send)
            return
        request = Request(scope, receive)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_CALLBACK_BYTES:
                await JSONResponse({"error": "request body too large"}, 413)(scope, receive, send)
                return
        response = await self._handle(request, bytes(body))
        await response(scope, receive, send)

    def _verified(self, request: Request, body: bytes) -> list[SlackChannel]:
        """Every channel whose signing secret verifies the callback (several may share one)."""
        timestamp = request.headers.get("x-slack-request-timestamp")
        signature = request.headers.get("x-slack-signature")
        now = self.clock()
        # Every secret is checked, so timing does not tell which channel (if any) matched.
        return [c for c in self.channels if verify_slack(c.signing_secret, timestamp, signature, body, now)]

    def _reject(self, why: str) -> JSONResponse:
        self.rejected += 1
        now = time.monotonic()
        if now - self._warned_at >= WARNING_EVERY:
            self._warned_at = now
            log.warning(
                "rejected a Slack callback on %s: %s (%d so far)", SLACK_ACTIONS_PATH, why, self.rejected
            )
        return JSONResponse({"error": "unauthorized"}, 401)

    async def _handle(self, request: Request, body: bytes) -> JSONResponse:
        verified = self._verified(request, body)
        if not verified:
            return self._reject("bad signature or stale timestamp")
        try:
            text = parse_qs(body.decode())["payload"][0]
            jsonlimits.check(text.encode())
            payload = json.loads(text)
            user = cast(dict[str, Any], payload["user"])
            user_id = str(user["id"])
            action_id = str(cast(list[dict[str, Any]], payload["actions"])[0]["action_id"])
        except (KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError, RecursionError):
            # ValueError includes a payload past a JSON cap (jsonlimits.InputLimitExceeded).
            return JSONResponse({"error": "not a Slack block_actions payload"}, 400)
        if action_id.startswith(APPROVE_PREFIX):
            verdict, ticket_id = "approve", action_id.removeprefix(APPROVE_PREFIX)
        elif action_id.startswith(DENY_PREFIX):
            verdict, ticket_id = "deny", action_id.removeprefix(DENY_PREFIX)
        else:
            return JSONResponse({"ok": True, "ignored": action_id})
        ticket = await self.service.get(ticket_id)
        if ticket is None:
            return JSONResponse({"ok": False, "text": f"no approval ticket {ticket_id}"})
        asked = _answering_channels(ticket)
        channels = [c for c in verified if (c.name or c.type) in asked]
        if not channels:
            return self._reject(f"signed for no channel ticket {ticket_id} was sent to")
        if not any(not c.approvers or user_id in c.approvers for c in channels):
            log.warning(
                "Slack user %s may not decide approval ticket %s (not in approvers)", user_id, ticket_id
            )
            return JSONResponse({"ok": False, "text": "You are not an approver for this ticket."})
        text = "denied from Slack" if verdict == "deny" else None
        try:
            await self.service.decide(ticket_id, Verdict(f"slack:{user_id}", verdict, text, "slack"))
        except (TicketConflict, TicketNotFound) as exc:
            return JSONResponse({"ok": False, "text": str(exc)})
        return JSONResponse({"ok": True})


def _answering_channels(ticket: Ticket) -> frozenset[str]:
    """The channels whose people may decide ``ticket`` from Slack: its own, and those it escalated to."""
    return frozenset((ticket.request.channel, *ticket.escalated_to))
