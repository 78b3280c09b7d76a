"""Attribution without plumbing: the official MCP client, built with no Helio headers at all,
through the real proxy (in process) to the refund example's server, with ``helio.instrument()``.

The proxy's ``requires`` gate only opens for a session whose own ``orders.lookup`` succeeded, so
a call filed under the wrong session (or none) stays blocked: the audit trail shows which session
each call landed in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError

import helio
from examples.refund.server import build_server
from helio import HelioContext
from helio_proxy.app import HelioApp
from tests.harness import audit_records, proxy_config, run_proxy, serve_asgi

REQUIRES = """
policies:
  default: deny
  rules:
    - name: refund-needs-lookup
      match: {tool: process_refund}
      requires: ['orders.lookup']
    - name: reads
      match: {annotations: {readOnlyHint: true}}
      action: allow
"""


@pytest.fixture(autouse=True)
def _uninstrumented() -> Iterator[None]:
    yield
    helio.uninstrument()


@asynccontextmanager
async def proxy(audit: Path) -> AsyncIterator[HelioApp]:
    upstream = build_server().streamable_http_app(stateless_http=True)
    async with serve_asgi(upstream) as base:
        config = proxy_config(f"{base}/mcp", REQUIRES, audit_path=str(audit))
        async with run_proxy(config) as app:
            yield app


def context(session_id: str) -> HelioContext:
    return HelioContext("http://127.0.0.1:9", session_id, token="")


async def refund(mcp: Client, order_id: str) -> list[str]:
    """Refund, looking the order up when the proxy says so; returns the outcomes in order."""
    outcomes: list[str] = []
    for _ in range(2):
        try:
            await mcp.call_tool("process_refund", {"order_id": order_id})
        except MCPError as exc:
            block = helio.blocked(exc)
            if block is None:
                raise
            outcomes.append(block.reason)
            for tool in block.missing_dependencies:
                await mcp.call_tool(tool, {"order_id": order_id})
            continue
        outcomes.append("refunded")
        break
    return outcomes


def calls(audit: Path) -> list[tuple[Any, ...]]:
    """The refund calls the proxy recorded (read after it stopped: its writer has drained)."""
    return [
        (r["session_id"], r["tool_name"], r["policy_decision"], r["block_reason"])
        for r in audit_records(audit)
        if r["tool_name"] in ("orders.lookup", "process_refund")
    ]


async def test_one_client_opened_outside_any_context_files_each_call_under_the_context_it_is_made_in(
    tmp_path: Path,
) -> None:
    audit = tmp_path / "audit.db"
    async with proxy(audit) as app:
        helio.instrument(proxy_urls=[app.mcp_url])
        async with Client(app.mcp_url) as mcp:
            async with context("run-a"):
                first = await refund(mcp, "A-1001")
            async with context("run-b"):
                second = await refund(mcp, "A-1002")
    recorded = calls(audit)
    assert first == second == ["dependency_missing", "refunded"]
    assert recorded == [
        ("run-a", "process_refund", "deny", "dependency_missing"),
        ("run-a", "orders.lookup", "allow", None),
        ("run-a", "process_refund", "allow", None),
        ("run-b", "process_refund", "deny", "dependency_missing"),
        ("run-b", "orders.lookup", "allow", None),
        ("run-b", "process_refund", "allow", None),
    ]


async def test_two_concurrent_agent_tasks_sharing_one_client_keep_their_sessions_apart(
    tmp_path: Path,
) -> None:
    audit = tmp_path / "audit.db"
    async with proxy(audit) as app:
        helio.instrument(proxy_urls=[app.mcp_url])
        async with Client(app.mcp_url) as mcp:

            async def agent(session_id: str, order_id: str) -> list[str]:
                async with context(session_id):
                    return await refund(mcp, order_id)

            async with asyncio.timeout(30):
                outcomes = await asyncio.gather(agent("task-a", "A-1001"), agent("task-b", "A-1002"))
    recorded = calls(audit)
    assert outcomes == [["dependency_missing", "refunded"]] * 2
    for session in ("task-a", "task-b"):
        assert [row[1:] for row in recorded if row[0] == session] == [
            ("process_refund", "deny", "dependency_missing"),
            ("orders.lookup", "allow", None),
            ("process_refund", "allow", None),
        ]
    assert {row[0] for row in recorded} == {"task-a", "task-b"}


async def test_without_instrument_the_same_agent_is_not_filed_under_its_context(tmp_path: Path) -> None:
    audit = tmp_path / "audit.db"
    async with proxy(audit) as app, Client(app.mcp_url) as mcp:
        async with context("run-a"):
            with pytest.raises(MCPError):
                await mcp.call_tool("process_refund", {"order_id": "A-1001"})
    recorded = calls(audit)
    assert len(recorded) == 1
    assert recorded[0][0] != "run-a"
