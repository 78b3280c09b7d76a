"""Caps on what the proxy holds (issue 16 point 4): open ``GET /mcp`` streams, open approval
tickets, evidence keys per session. Each breach gets its stable answer, and the place comes back
once something is closed."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, MCPError
from mcp.client.sse import sse_client

from helio_proxy.app import HelioApp
from helio_proxy.config.sections import DEFAULT_MAX_STREAMS
from helio_proxy.evidence.store import DEFAULT_LIMITS
from helio_proxy.transports.downstream.streamable_http import McpListenerApp
from tests.harness import mcp_upstream, proxy_config, run_proxy
from tests.integration.approval_support import (
    PAYMENTS,
    approval_config,
    decide,
    held_ticket,
    raw_call,
    records,
    wait_until,
)

STREAM_HEADERS = {"accept": "text/event-stream"}


def _listener(app: HelioApp) -> McpListenerApp:
    assert app.mcp_app is not None
    return app.mcp_app


async def test_one_stream_over_max_streams_is_refused_with_503_and_its_place_comes_back() -> None:
    assert DEFAULT_MAX_STREAMS == 1024
    async with mcp_upstream(stateless=True) as upstream:
        config = proxy_config(upstream).replace(
            "listen:\n  port: 0\n", "listen:\n  port: 0\n  max_streams: 2\n"
        )
        async with run_proxy(config) as app, httpx.AsyncClient(timeout=10) as http:
            listener = _listener(app)
            assert listener.max_streams == 2
            async with (
                http.stream("GET", app.mcp_url, headers=STREAM_HEADERS) as first,
                http.stream("GET", app.mcp_url, headers=STREAM_HEADERS) as second,
            ):
                assert (first.status_code, second.status_code) == (200, 200)
                assert listener.open_streams == 2
                refused = await http.get(app.mcp_url, headers=STREAM_HEADERS)
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "5"
                error = refused.json()["error"]
                assert error["code"] == -32600
                assert error["data"] == {"reason": "capacity_exhausted", "limit": "max_streams", "max": 2}
                # A POST is not a stream: calls are still served while the streams are full.
                answer = await raw_call(app.mcp_url, "search_docs", {"query": "q"})
                assert "result" in answer
            # Closing the streams frees their places (the proxy sees each disconnect on its own time).
            await wait_until(lambda: listener.open_streams == 0)
            async with http.stream("GET", app.mcp_url, headers=STREAM_HEADERS) as again:
                assert again.status_code == 200


async def test_a_refused_stream_open_gives_its_place_back() -> None:
    # A stateful upstream refuses a GET without a session: no stream opens and no place is kept.
    async with mcp_upstream() as upstream, run_proxy(proxy_config(upstream)) as app:
        async with httpx.AsyncClient(timeout=10) as http:
            refused = await http.get(app.mcp_url, headers=STREAM_HEADERS)
        assert refused.status_code == 400
        assert _listener(app).open_streams == 0


PAYMENT = {"amount": 120.5, "currency": "EUR", "recipient": "acme"}


async def test_a_call_that_would_open_one_ticket_too_many_is_blocked_and_audited(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    policies = PAYMENTS + "approval:\n  max_pending: 1\n"
    async with mcp_upstream(stateless=True) as upstream:
        async with run_proxy(approval_config(upstream, policies, audit_path=str(db))) as app:
            assert app.loaded.config.approval.max_pending == 1
            held = asyncio.create_task(raw_call(app.mcp_url, "create_payment", PAYMENT, session="a"))
            ticket = await held_ticket(app)
            other = {**PAYMENT, "amount": 7}
            full = (await raw_call(app.mcp_url, "create_payment", other, session="b"))["error"]
            # The same block on the legacy SSE transport, through the official client.
            async with Client(sse_client(app.sse_url), mode="legacy") as client:
                with pytest.raises(MCPError) as over_sse:
                    await client.call_tool("create_payment", other)
            # Deciding the open ticket makes room: the next call is held again.
            assert (await decide(app, ticket["id"], "deny")).status_code == 200
            first = (await held)["error"]
            again = asyncio.create_task(raw_call(app.mcp_url, "create_payment", other, session="b"))
            second = await held_ticket(app)
            assert second["id"] != ticket["id"]
            assert (await decide(app, second["id"], "deny")).status_code == 200
            assert (await again)["error"]["data"]["reason"] == "approval_denied"
    assert first["data"]["reason"] == "approval_denied"
    assert full["code"] == -32001
    data: dict[str, Any] = full["data"]
    assert data["reason"] == "approval_capacity_exhausted"
    assert (data["max_pending"], data["ticket_id"], data["retry_allowed"]) == (1, None, True)
    assert (data["rule"], data["action"]) == ("approve-payments", "require_approval")
    assert "approval queue is full" in full["message"]
    assert "Retry later" in data["suggestion"]
    assert over_sse.value.code == -32001
    assert over_sse.value.data["reason"] == "approval_capacity_exhausted"
    assert over_sse.value.data["max_pending"] == 1
    refused = [r for r in records(db) if r["block_reason"] == "approval_capacity_exhausted"]
    assert [r["session_id"] == "b" for r in refused] == [True, False]  # HTTP, then SSE
    for record in refused:
        assert (record["approval_status"], record["upstream_response"]) == ("capacity_exhausted", None)
        assert record["policy_decision"] == "require_approval"


async def test_one_evidence_key_over_the_cap_is_refused_on_the_sideband_with_its_limit() -> None:
    assert DEFAULT_LIMITS.max_keys_per_session == 256
    most = 3  # lowered in the config, so the test posts 4 keys rather than 257
    keys = [f"k{n}" for n in range(most + 1)]
    policy = (
        f"sdk: {{enabled: true, port: 0}}\nsession:\n  max_keys_per_session: {most}\n"
        "policies:\n  rules:\n    - name: many-keys\n      match: {tool: create_payment}\n"
        f"      evidence: {{requires: [{', '.join(keys)}]}}\n"
    )
    async with run_proxy(proxy_config("http://127.0.0.1:9/mcp", policy)) as app:
        assert app.sdk_token is not None
        assert app.sessions.limits == replace(DEFAULT_LIMITS, max_keys_per_session=most)
        auth = {"authorization": f"Bearer {app.sdk_token.value}"}
        async with httpx.AsyncClient(base_url=app.sideband_url, headers=auth, timeout=10) as http:

            async def mark(key: str) -> httpx.Response:
                body: dict[str, Any] = {
                    "session_id": "s",
                    "tool_name": "t",
                    "evidence_key": key,
                    "evidence_data": {},
                }
                return await http.post("/evidence", json=body)

            for key in keys[:most]:
                assert (await mark(key)).status_code == 201
            refused = await mark(keys[most])
            replaced = await mark(keys[0])  # a key the session holds can still be written
    assert refused.status_code == 503
    body = refused.json()
    assert body["code"] == "capacity_exhausted"
    assert body["details"] == {"limit": "max_keys_per_session", "max": most}
    assert replaced.status_code == 201
