"""Messages two readers could take differently are refused at ingress on every HTTP transport
(``POST /mcp``, a batch element, legacy ``POST /messages``), recorded as ``rejected``, and never
forwarded: an object repeating a key, and a ``tools/call`` without an ``id``. (stdio: test_wrap.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import mcp_upstream, proxy_config, run_proxy
from tests.integration.approval_support import records
from tests.integration.test_legacy_sse_downstream import raw_sse

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
LIMIT = """
policies:
  default: allow
  rules:
    - name: large-payments
      match: {tool: create_payment, input: {'$.amount': {gt: 1000}}}
      action: deny
"""
DUPLICATED = (
    b'{"jsonrpc":"2.0","id":7,"method":"tools/call",'
    b'"params":{"name":"create_payment","arguments":{"amount":5000000,"recipient":"acme","amount":1}}}'
)
NOTIFICATION = json.dumps(
    {
        "jsonrpc": "2.0",
        "method": "tools/call",
        "params": {"name": "create_payment", "arguments": {"amount": 5000000, "recipient": "acme"}},
    }
).encode()
TRANSPORTS = ["streamable-http", "batch", "legacy-sse"]


@asynccontextmanager
async def _sender(transport: str, db: Path) -> AsyncIterator[Any]:
    """A function that POSTs raw bytes over ``transport`` and returns (HTTP status, the JSON-RPC
    answer or ``None``)."""
    async with (
        mcp_upstream(json_response=True) as upstream,
        run_proxy(proxy_config(upstream, LIMIT, audit_path=str(db))) as app,
        httpx.AsyncClient(timeout=30) as http,
    ):
        if transport == "legacy-sse":
            async with raw_sse(http, app.sse_url) as sse:
                await sse.initialize()

                async def over_sse(raw: bytes) -> tuple[int, dict[str, Any] | None]:
                    posted = await http.post(sse.endpoint, content=raw, headers=HEADERS)
                    if posted.status_code == 202:
                        return 202, (await sse.message()) if b'"id"' in raw else None
                    return posted.status_code, posted.json()

                yield over_sse
            return
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-03-26",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        opened = await http.post(app.mcp_url, json=init, headers=HEADERS)
        session = {**HEADERS, "mcp-session-id": opened.headers["mcp-session-id"]}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(app.mcp_url, json=initialized, headers=session)).status_code == 202

        async def over_http(raw: bytes) -> tuple[int, dict[str, Any] | None]:
            body = b"[" + raw + b"]" if transport == "batch" else raw
            posted = await http.post(app.mcp_url, content=body, headers=session)
            if not posted.content:
                return posted.status_code, None
            answer = posted.json()
            return posted.status_code, answer[0] if transport == "batch" else answer

        yield over_http


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_repeated_key_is_refused_with_32600_recorded_rejected_and_never_forwarded(
    transport: str, tmp_path: Path
) -> None:
    """Issue 22 point 9: ``{"amount":5000000,"amount":1}`` was decided on 1 and forwarded as sent."""
    db = tmp_path / "audit.db"
    async with _sender(transport, db) as send:
        status, answer = await send(DUPLICATED)
    assert status == (200 if transport == "batch" else 400)
    assert answer is not None
    assert answer["error"]["code"] == -32600
    assert answer["error"]["data"] == {
        "reason": "duplicate_key",
        "duplicate_key": "params.arguments.amount",
        "method": "tools/call",
    }
    assert answer["id"] == 7
    [record] = records(db)
    assert (record["tool_name"], record["policy_decision"], record["block_reason"]) == (
        "create_payment",
        "rejected",
        "duplicate_key",
    )
    assert record["tool_input"] == {}  # neither reading of the arguments is recorded as the call
    assert record["metadata"]["duplicate_key"] == "params.arguments.amount"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_tools_call_notification_is_refused_with_32600_recorded_rejected_and_never_forwarded(
    transport: str, tmp_path: Path
) -> None:
    """Issue 22 point 8: a tools/call without an id was forwarded with 202 and never audited."""
    db = tmp_path / "audit.db"
    async with _sender(transport, db) as send:
        status, answer = await send(NOTIFICATION)
    assert status == (200 if transport == "batch" else 400)
    assert answer is not None
    assert "id" not in answer
    assert answer["error"]["code"] == -32600
    assert answer["error"]["data"] == {"reason": "notification_tool_call", "method": "tools/call"}
    [record] = records(db)
    assert (record["tool_name"], record["policy_decision"], record["block_reason"]) == (
        "create_payment",
        "rejected",
        "notification_tool_call",
    )
    assert record["tool_input"] == {"amount": 5000000, "recipient": "acme"}


async def test_the_same_keys_in_different_objects_are_not_a_repetition(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    nested = (
        b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"create_payment",'
        b'"arguments":{"amount":5,"recipient":"acme","_meta_note":{"amount":6,"note":{"amount":7}}}}}'
    )
    async with _sender("streamable-http", db) as send:
        status, answer = await send(nested)
    assert status == 200
    assert answer is not None
    assert answer["id"] == 8
    assert [r["policy_decision"] for r in records(db)] == ["allow"]


@pytest.mark.parametrize("transport", ["streamable-http", "legacy-sse"])
async def test_a_body_past_a_json_cap_or_the_size_cap_is_refused_with_32600_naming_the_cap(
    transport: str, tmp_path: Path
) -> None:
    """Issue 16: a body nested thousands deep raised RecursionError (HTTP 500); now every body is
    checked against ``listen.max_json_depth`` (64) before it is parsed."""
    db = tmp_path / "audit.db"
    deep = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    raw = (
        b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"create_payment","arguments":'
        + deep
        + b"}}"
    )
    async with _sender(transport, db) as send:
        status, answer = await send(raw)
        too_big_status, too_big = await send(b" " * ((4 << 20) + 1))
    assert too_big_status == 413
    assert too_big is not None
    assert too_big["error"]["data"] == {
        "reason": "input_limit_exceeded",
        "limit": "max_body_bytes",
        "max": 4 << 20,
    }
    assert status == 400
    assert answer is not None
    assert answer["error"]["code"] == -32600
    assert answer["error"]["data"] == {"reason": "input_limit_exceeded", "limit": "max_json_depth", "max": 64}
    [record] = records(db)
    assert (record["policy_decision"], record["block_reason"]) == ("rejected", "input_limit_exceeded")
    assert record["metadata"]["limit"] == "max_json_depth"  # the oversized body is not recorded
