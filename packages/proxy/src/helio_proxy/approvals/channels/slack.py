"""The ``slack`` channel: a Block Kit message with Approve/Deny buttons, updated once decided.

Requests go to the Slack Web API (``chat.postMessage``, then ``chat.update`` on resolution)
with the bot token. Button presses come back to ``POST /slack/actions`` on the MCP port
(:mod:`helio_proxy.approvals.slack_actions`), where they are verified with the signing secret.
The buttons' ``action_id`` values are ``helio_approve:<ticket id>`` and ``helio_deny:<ticket id>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, cast

import httpx

from helio_proxy.approvals.channels import ChannelContext, DeliveryError
from helio_proxy.approvals.model import Ticket, TicketStatus
from helio_proxy.config.approval import SlackChannel

APPROVE_PREFIX: Final = "helio_approve:"
DENY_PREFIX: Final = "helio_deny:"
MAX_ARGUMENTS_TEXT: Final = 2500
"""Characters of the arguments shown in a message (Slack caps a text block at 3,000)."""

_OUTCOMES: Final = {
    TicketStatus.APPROVED: "Approved",
    TicketStatus.CONSUMED: "Approved",
    TicketStatus.BREAK_GLASS: "Released by break-glass",
    TicketStatus.DENIED: "Denied",
    TicketStatus.TIMEOUT: "Timed out",
    TicketStatus.CLIENT_DISCONNECTED: "Cancelled (the agent disconnected)",
}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _arguments(ticket: Ticket) -> str:
    text = json.dumps(ticket.request.tool_input, indent=2, ensure_ascii=False, default=str)
    if len(text) > MAX_ARGUMENTS_TEXT:
        text = text[:MAX_ARGUMENTS_TEXT] + "\n…"
    return _escape(text)


def _called(ticket: Ticket) -> str:
    """The tool as titles name it: ``upstream/tool`` when the proxy mounts several upstreams."""
    return ticket.tool_name if ticket.upstream is None else f"{ticket.upstream}/{ticket.tool_name}"


def _summary_blocks(ticket: Ticket, title: str) -> list[dict[str, Any]]:
    request = ticket.request
    fields = [
        f"*Tool*\n`{_escape(ticket.tool_name)}`",
        f"*Rule*\n{_escape(request.matched_rule or request.reason)}",
        f"*Session*\n{_escape(ticket.session_id or 'unknown')}",
        f"*Expires*\n{ticket.expires_at}",
    ]
    if ticket.upstream is not None:
        fields.insert(1, f"*Upstream*\n`{_escape(ticket.upstream)}`")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Arguments*\n```{_arguments(ticket)}```"}},
    ]
    if request.breached_budgets:
        lines = [
            f"• {_escape(str(b.get('name')))}: {b.get('current')} + {b.get('amount')} of {b.get('limit')} "
            f"{_escape(str(b.get('currency') or ''))}"
            for b in request.breached_budgets
        ]
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Breached budgets*\n" + "\n".join(lines)}}
        )
    quorum = f" · {request.quorum} approvals needed" if request.quorum > 1 else ""
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Helio ticket `{ticket.id}`{quorum}"}]}
    )
    return blocks


def request_blocks(ticket: Ticket, *, escalation: bool) -> list[dict[str, Any]]:
    """The message for a pending ticket, with its buttons."""
    title = ("Escalated: approval" if escalation else "Approval") + f" requested for {_called(ticket)}"
    buttons = [
        {
            "type": "button",
            "action_id": f"{APPROVE_PREFIX}{ticket.id}",
            "style": "primary",
            "text": {"type": "plain_text", "text": "Approve"},
            "value": ticket.id,
        },
        {
            "type": "button",
            "action_id": f"{DENY_PREFIX}{ticket.id}",
            "style": "danger",
            "text": {"type": "plain_text", "text": "Deny"},
            "value": ticket.id,
        },
    ]
    return [
        *_summary_blocks(ticket, title),
        {"type": "actions", "block_id": f"helio:{ticket.id}", "elements": buttons},
    ]


def resolved_blocks(ticket: Ticket) -> list[dict[str, Any]]:
    """The message once decided: the buttons give way to the outcome."""
    outcome = _OUTCOMES.get(ticket.status, ticket.status.value)
    who = f" by {_escape(ticket.resolved_by)}" if ticket.resolved_by else ""
    reason = (
        f": {_escape(ticket.resolution_reason)}"
        if ticket.resolution_reason and ticket.status != TicketStatus.TIMEOUT
        else ""
    )
    when = f" at {ticket.resolved_at}" if ticket.resolved_at else ""
    line = {"type": "section", "text": {"type": "mrkdwn", "text": f"*{outcome}*{who}{when}{reason}"}}
    return [*_summary_blocks(ticket, f"{outcome}: {_called(ticket)}"), line]


class SlackNotifier:
    def __init__(self, config: SlackChannel, context: ChannelContext) -> None:
        self.ref = config.name or config.type
        self.config = config
        self.context = context
        self.api_base = config.api_base.rstrip("/")

    async def requested(self, ticket: Ticket, *, escalation: bool) -> Mapping[str, Any] | None:
        blocks = request_blocks(ticket, escalation=escalation)
        text = f"Approval requested for {_called(ticket)} (ticket {ticket.id})"
        data = await self._call(
            "chat.postMessage", {"channel": self.config.channel, "text": text, "blocks": blocks}
        )
        return {"channel": data.get("channel"), "ts": data.get("ts")}

    async def resolved(self, ticket: Ticket, deliveries: list[Mapping[str, Any]]) -> None:
        blocks = resolved_blocks(ticket)
        text = f"{_OUTCOMES.get(ticket.status, ticket.status.value)}: {_called(ticket)} (ticket {ticket.id})"
        for delivery in deliveries:
            if delivery.get("channel") and delivery.get("ts"):
                payload = {
                    "channel": delivery["channel"],
                    "ts": delivery["ts"],
                    "text": text,
                    "blocks": blocks,
                }
                await self._call("chat.update", payload)

    async def _call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload, default=str).encode()

        def request() -> httpx.Request:
            return self.context.http.build_request(
                "POST",
                f"{self.api_base}/{method}",
                content=body,
                headers={
                    "authorization": f"Bearer {self.config.bot_token}",
                    "content-type": "application/json; charset=utf-8",
                },
                timeout=self.context.timeout,
            )

        description = f"slack {self.ref!r} {method}"
        response = await self.context.send(description, request)
        try:
            data = response.json()
        except ValueError:
            raise DeliveryError(f"{description}: the answer is not JSON") from None
        if not isinstance(data, dict) or data.get("ok") is not True:  # pyright: ignore[reportUnknownMemberType]
            error = cast(dict[str, Any], data).get("error") if isinstance(data, dict) else None
            raise DeliveryError(f"{description}: Slack answered ok=false ({error or 'no error given'})")
        return cast(dict[str, Any], data)
