"""Scripted traffic ``helio demo`` sends through its own proxy, so every console screen has data.

The official MCP client: reads that are allowed (and use the report-steps budget), a
destructive call that is denied, an email that is only a dry run, and a payment that waits for an
operator's approval (it completes when someone approves it in the console, or times out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger("helio_proxy.demo.traffic")

SCRIPT: tuple[tuple[str, dict[str, Any]], ...] = (
    ("get_weather", {"city": "London"}),
    ("search_docs", {"query": "refund"}),
    ("lookup_order", {"order_id": "A-1001"}),
    ("build_report", {"steps": 3}),
    ("build_report", {"steps": 5}),
    ("delete_user", {"user_id": "u-42"}),
    ("send_email", {"to": "ops@example.com", "body": "Weekly report attached."}),
)
"""Calls made in order; then ``create_payment`` is left waiting for approval."""

SESSION_META_KEY = "io.gethelio/session-id"
SESSION_ID = "helio-demo-traffic"
"""Every scripted call is in this session (the console's Sessions screen shows it)."""

HELD_PAYMENT: dict[str, Any] = {"amount": 125, "recipient": "acme-supplies"}


async def _call(mcp_url: str, tool: str, arguments: dict[str, Any]) -> None:
    """One call in its own client: a refusal ends that client's session, never the script."""
    from mcp import Client, MCPError

    with contextlib.suppress(MCPError, ExceptionGroup):
        async with Client(mcp_url, mode="legacy") as client:
            await client.call_tool(tool, arguments, meta={SESSION_META_KEY: SESSION_ID})


async def drive(mcp_url: str) -> None:
    """Make the scripted calls; refusals are what the demo shows, so they are not errors here."""
    try:
        for tool, arguments in SCRIPT:
            await _call(mcp_url, tool, arguments)
        await _call(mcp_url, "create_payment", HELD_PAYMENT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the demo goes on without its traffic
        log.warning("demo traffic stopped: %s", exc)
