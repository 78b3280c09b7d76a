"""Store-backed session state: a proxy restart keeps a session's evidence and history, and
``helio policy test --session`` decides a gated call as the running proxy does.

The real proxy (examples/refund's tools behind it, the official ``mcp`` client sending the SDK's
headers, the SDK on the sideband) runs on SQLite with ``store.session_state: store`` and on
PostgreSQL (``auto`` picks the store there). The in-memory default on SQLite is the control: it
forgets the session on restart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal

import httpx2
import pytest
from click.testing import CliRunner
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from sqlalchemy import event

from examples.refund.server import build_server
from helio import HelioContext, call_id_of
from helio_proxy.app import HelioApp
from helio_proxy.cli import cli
from helio_proxy.evidence import InMemorySessionStore, SqlSessionStore
from helio_proxy.store.sql import WRITER_MARK
from helio_proxy.store.testing import postgres_schema
from tests.harness import audit_records, proxy_config, run_proxy, serve_asgi

GATED = """
sdk: {enabled: true, port: 0}
policies:
  default: deny
  rules:
    - name: refund-needs-lookup
      match: {tool: process_refund}
      evidence:
        requires:
          - key: order_data
            from: orders.lookup
            verified: true
            match: {$.order_id: $.order_id}
    - name: reads
      match: {annotations: {readOnlyHint: true}}
      action: allow
"""

Setup = Literal["sqlite-store", "postgres-auto", "sqlite-memory"]


@contextmanager
def config_text(setup: Setup, base: str, tmp_path: Path) -> Iterator[str]:
    """The proxy config for ``setup``, the same on every start."""
    audit = str(tmp_path / "audit.db")
    if setup == "postgres-auto":
        with postgres_schema() as url:
            yield proxy_config(base, GATED + f"store:\n  url: '{url}'\n", audit_path=audit)
        return
    mode = "store" if setup == "sqlite-store" else "memory"
    yield proxy_config(base, GATED + f"store:\n  session_state: {mode}\n", audit_path=audit)


@asynccontextmanager
async def agent(text: str, session_id: str) -> AsyncIterator[tuple[HelioApp, HelioContext, Client]]:
    """A proxy on ``text`` and one agent session ``session_id`` through it."""
    async with run_proxy(text) as app:
        assert app.sdk_token is not None
        async with (
            HelioContext(app.sideband_url, session_id, token=app.sdk_token.value) as ctx,
            httpx2.AsyncClient(headers=ctx.headers, timeout=10) as http,
            Client(streamable_http_client(app.mcp_url, http_client=http)) as mcp,
        ):
            yield app, ctx, mcp


async def refund(mcp: Client, order_id: str) -> str:
    """``forwarded``, or ``blocked (<reason>)`` as the proxy answered."""
    try:
        await mcp.call_tool("process_refund", {"order_id": order_id, "amount": "1.00"})
    except MCPError as exc:
        data: dict[str, Any] = exc.data
        return f"blocked ({data['reason']})" if exc.code == -32001 else f"error {exc.code}"
    return "forwarded"


@pytest.mark.parametrize("setup", ["sqlite-store", "postgres-auto"])
async def test_a_restart_on_the_same_store_keeps_the_sessions_evidence_and_history(
    setup: Setup, tmp_path: Path
) -> None:
    upstream = build_server().streamable_http_app(json_response=True, stateless_http=True)
    async with serve_asgi(upstream) as base:
        with config_text(setup, f"{base}/mcp", tmp_path) as text:
            async with agent(text, "run-restart") as (app, ctx, mcp):
                assert isinstance(app.sessions, SqlSessionStore)
                assert await refund(mcp, "A-1001") == "blocked (evidence_missing)"
                lookup = await mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
                call_id = call_id_of(lookup)
                receipt = await ctx.amark_evidence(
                    "orders.lookup", "order_data", lookup.structured_content, call_id=call_id
                )
                assert receipt.verified is True
                assert await refund(mcp, "A-1001") == "forwarded"

            # A new proxy process state on the same store: the session is where it was.
            async with agent(text, "run-restart") as (_app, ctx, mcp):
                assert await refund(mcp, "A-1001") == "forwarded"
                assert await refund(mcp, "A-1002") == "blocked (evidence_mismatch)"
                state = (await ctx.aget_evidence_state()).state
                entry = state.evidence["order_data"]
                assert (entry.verified, entry.call_id) == (True, call_id)
                history = [(c.tool_name, c.succeeded) for c in state.completed_tools]
                assert history == [
                    ("orders.lookup", True),
                    ("process_refund", True),
                    ("process_refund", True),
                ]
                assert state.completed_tools[0].call_id == call_id


async def test_in_memory_session_state_is_forgotten_on_restart(tmp_path: Path) -> None:
    upstream = build_server().streamable_http_app(json_response=True, stateless_http=True)
    async with serve_asgi(upstream) as base:
        with config_text("sqlite-memory", f"{base}/mcp", tmp_path) as text:
            async with agent(text, "run-forget") as (app, ctx, mcp):
                assert isinstance(app.sessions, InMemorySessionStore)
                lookup = await mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
                await ctx.amark_result("orders.lookup", "order_data", lookup)
                assert await refund(mcp, "A-1001") == "forwarded"
            async with agent(text, "run-forget") as (_app, ctx, mcp):
                assert await refund(mcp, "A-1001") == "blocked (evidence_missing)"


def policy_test_outcome(config: Path, session_id: str, order_id: str) -> tuple[str, str]:
    """``helio policy test``'s ``Outcome:`` (in the proxy's words) and ``Session:`` lines."""
    args = json.dumps({"order_id": order_id, "amount": "1.00"})
    result = CliRunner().invoke(
        cli,
        [
            "policy",
            "test",
            "-c",
            str(config),
            "--tool",
            "process_refund",
            "--args",
            args,
            "--session",
            session_id,
        ],
    )
    assert result.exit_code == 0, result.output
    lines = {
        line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in result.stdout.splitlines() if ": " in line
    }
    return lines["Outcome"], lines["Session"]


@pytest.mark.parametrize("setup", ["sqlite-store", "postgres-auto"])
async def test_policy_test_with_a_session_gives_the_proxys_decision_for_sdk_marked_evidence(
    setup: Setup, tmp_path: Path
) -> None:
    upstream = build_server().streamable_http_app(json_response=True, stateless_http=True)
    async with serve_asgi(upstream) as base:
        with config_text(setup, f"{base}/mcp", tmp_path) as text:
            config = tmp_path / "helio.yaml"
            config.write_text(text)
            async with agent(text, "run-cli") as (app, ctx, mcp):
                lookup = await mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
                await ctx.amark_evidence(
                    "orders.lookup", "order_data", lookup.structured_content, call_id=call_id_of(lookup)
                )
                # Asked first (policy test never writes), then the proxy answers the same calls.
                cases = [("run-cli", "A-1002"), ("run-cli", "A-1001"), ("run-other", "A-1001")]
                said = [policy_test_outcome(config, session, order) for session, order in cases]
                proxy = [await refund(mcp, "A-1002"), await refund(mcp, "A-1001")]
                async with (
                    HelioContext(app.sideband_url, "run-other") as other_ctx,
                    httpx2.AsyncClient(headers=other_ctx.headers, timeout=10) as http,
                    Client(streamable_http_client(app.mcp_url, http_client=http)) as other,
                ):
                    proxy.append(await refund(other, "A-1001"))
            assert [outcome for outcome, _ in said] == proxy
            assert proxy == ["blocked (evidence_mismatch)", "forwarded", "blocked (evidence_missing)"]
            assert "from " in said[0][1]
            assert "1 live evidence (1 verified)" in said[0][1]
            assert "1 earlier calls" in said[0][1]


async def test_a_session_store_that_cannot_be_read_blocks_with_store_unavailable_until_it_is_back(
    tmp_path: Path,
) -> None:
    """The gate check's read fails (the session_state table is gone): the call fails closed with
    ``store_unavailable`` and ``retry_allowed: true``, is audited so, and passes once the table is back."""
    upstream = build_server().streamable_http_app(json_response=True, stateless_http=True)
    async with serve_asgi(upstream) as base:
        with config_text("sqlite-store", f"{base}/mcp", tmp_path) as text:
            async with agent(text, "run-down") as (_app, ctx, mcp):
                lookup = await mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
                await ctx.amark_result("orders.lookup", "order_data", lookup)
                assert await refund(mcp, "A-1001") == "forwarded"
                database = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
                try:
                    database.execute("ALTER TABLE session_state RENAME TO session_state_away")
                    with pytest.raises(MCPError) as blocked:
                        await mcp.call_tool("process_refund", {"order_id": "A-1001", "amount": "1.00"})
                    with pytest.raises(MCPError) as read:
                        await mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
                    database.execute("ALTER TABLE session_state_away RENAME TO session_state")
                finally:
                    database.close()
                assert await refund(mcp, "A-1001") == "forwarded"
    error = blocked.value
    assert error.code == -32001
    assert (error.data["reason"], error.data["retry_allowed"]) == ("store_unavailable", True)
    assert "missing_evidence" not in error.data
    # An ungated tool of the session is blocked too: its SDK-declared prerequisites are unknown.
    assert read.value.data["reason"] == "store_unavailable"
    reasons = [r["block_reason"] for r in audit_records(tmp_path / "audit.db", tool="process_refund")]
    assert reasons == [None, "store_unavailable", None]


@pytest.mark.parametrize("setup", ["sqlite-store", "postgres-auto"])
async def test_a_governed_call_reads_its_session_state_once_by_primary_key(
    setup: Setup, tmp_path: Path
) -> None:
    """Issue 18: one indexed read per governed call at most (the gate check's snapshot, which does
    not read the session's call history); the completion's write is one job on the writer's
    connection."""
    upstream = build_server().streamable_http_app(json_response=True, stateless_http=True)
    async with serve_asgi(upstream) as base:
        with config_text(setup, f"{base}/mcp", tmp_path) as text:
            async with agent(text, "run-count") as (app, ctx, mcp):
                lookup = await mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
                await ctx.amark_result("orders.lookup", "order_data", lookup)
                assert isinstance(app.sessions, SqlSessionStore)
                seen: list[tuple[bool, str]] = []

                def count(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                    if "session_state" in statement or "session_history" in statement:
                        seen.append((bool(conn.info.get(WRITER_MARK)), " ".join(statement.split())))

                engine = app.sessions.store.engine  # pyright: ignore[reportAttributeAccessIssue]
                event.listen(engine, "before_cursor_execute", count)
                try:
                    assert await refund(mcp, "A-1001") == "forwarded"
                finally:
                    event.remove(engine, "before_cursor_execute", count)
    reads = [sql for writer, sql in seen if not writer]
    placeholder = "%(session_id_1)s::VARCHAR" if setup == "postgres-auto" else "?"
    assert reads == [
        f"SELECT session_state.state FROM session_state WHERE session_state.session_id = {placeholder}"  # noqa: S608 - expected text
    ]
    assert all(writer for writer, _ in seen if _ not in reads)
