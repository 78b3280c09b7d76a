"""Failed calls unlock nothing: the refund example's tools behind the real proxy, in process.

An ``orders.lookup`` of an unknown order answers ``isError: true``. Such a call is not a
prerequisite for ``requires`` (the TypeScript Helio counts it; we do not), and evidence the SDK
marks with its ``call_id`` is stored but not ``verified``, so a ``verified: true`` rule stays shut.
The agent side is what examples/refund does: the official MCP client sending
``HelioContext.headers``, and the SDK on the sideband (``sdk.port: 0``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from examples.refund.server import build_server
from helio import HelioContext
from helio_proxy.app import HelioApp
from tests.harness import proxy_config, run_proxy, serve_asgi

REQUIRES = """
sdk: {enabled: true, port: 0}
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

VERIFIED = """
sdk: {enabled: true, port: 0}
policies:
  default: deny
  rules:
    - name: refund-needs-verified-lookup
      match: {tool: process_refund}
      evidence: {requires: ['orders.lookup'], verified: true}
    - name: reads
      match: {annotations: {readOnlyHint: true}}
      action: allow
"""


@dataclass
class Agent:
    """One agent session: an MCP client through the proxy and the SDK context, one session id."""

    mcp: Client
    ctx: HelioContext

    async def refund_blocked(self, order_id: str) -> dict[str, Any]:
        with pytest.raises(MCPError) as caught:
            await self.mcp.call_tool("process_refund", {"order_id": order_id})
        assert caught.value.code == -32001
        data: dict[str, Any] = caught.value.data
        assert data["blocked"] is True
        return data

    async def last_call_id(self, tool: str) -> tuple[str | None, bool]:
        state = (await self.ctx.aget_evidence_state()).state
        call = [c for c in state.completed_tools if c.tool_name == tool][-1]
        return call.call_id, call.succeeded


@asynccontextmanager
async def refund_stack(policies: str, *, json_response: bool) -> AsyncIterator[Agent]:
    upstream = build_server().streamable_http_app(json_response=json_response, stateless_http=True)
    async with serve_asgi(upstream) as base, run_proxy(proxy_config(f"{base}/mcp", policies)) as app:
        token = _token(app)
        async with (
            HelioContext(app.sideband_url, token=token) as ctx,
            httpx2.AsyncClient(headers=ctx.headers, timeout=10) as http,
            Client(streamable_http_client(app.mcp_url, http_client=http)) as mcp,
        ):
            yield Agent(mcp, ctx)


def _token(app: HelioApp) -> str:
    assert app.sdk_token is not None
    return app.sdk_token.value


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "sse"])
async def test_a_failed_prerequisite_does_not_unlock_the_dependent_call(json_response: bool) -> None:
    async with refund_stack(REQUIRES, json_response=json_response) as agent:
        failed = await agent.mcp.call_tool("orders.lookup", {"order_id": "A-9999"})
        assert failed.is_error is True
        call_id, succeeded = await agent.last_call_id("orders.lookup")
        assert call_id is not None
        assert succeeded is False

        block = await agent.refund_blocked("A-9999")
        assert block["reason"] == "dependency_missing"
        assert block["missing_dependencies"] == ["orders.lookup"]
        assert block["retry_allowed"] is True

        # The same prerequisite, successful this time, opens the gate.
        found = await agent.mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
        assert found.is_error is False
        refund = await agent.mcp.call_tool("process_refund", {"order_id": "A-1001"})
        assert refund.is_error is False
        assert refund.structured_content is not None
        assert refund.structured_content["status"] == "refunded"


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "sse"])
async def test_evidence_bound_to_a_failed_call_is_not_verified_and_does_not_open_a_verified_gate(
    json_response: bool,
) -> None:
    async with refund_stack(VERIFIED, json_response=json_response) as agent:
        failed = await agent.mcp.call_tool("orders.lookup", {"order_id": "A-9999"})
        assert failed.is_error is True
        failed_id, succeeded = await agent.last_call_id("orders.lookup")
        assert (failed_id is not None, succeeded) == (True, False)

        receipt = await agent.ctx.amark_evidence(
            "orders.lookup", "orders.lookup", {"order_id": "A-9999"}, call_id=failed_id
        )
        assert receipt.verified is False
        entry = (await agent.ctx.aget_evidence_state()).state.evidence["orders.lookup"]
        assert (entry.verified, entry.call_id) == (False, failed_id)

        block = await agent.refund_blocked("A-9999")
        assert block["reason"] == "evidence_missing"
        assert block["missing_evidence"] == ["orders.lookup"]
        assert block["unverified_evidence"] == ["orders.lookup"]
        assert "call_id of that orders.lookup call" in block["suggestion"]
        assert "(it must succeed)" in block["suggestion"]

        # A successful call of another tool does not verify it either.
        verified = await agent.mcp.call_tool(
            "customer.verify", {"order_id": "A-1001", "email": "alice@example.com"}
        )
        assert verified.is_error is False
        other_id, _ = await agent.last_call_id("customer.verify")
        other = await agent.ctx.amark_evidence("orders.lookup", "orders.lookup", {}, call_id=other_id)
        assert other.verified is False
        assert (await agent.refund_blocked("A-1001"))["unverified_evidence"] == ["orders.lookup"]

        # Bound to a successful lookup, the same key is verified and the refund goes through.
        found = await agent.mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
        good_id, succeeded = await agent.last_call_id("orders.lookup")
        assert succeeded is True
        good = await agent.ctx.amark_evidence(
            "orders.lookup", "orders.lookup", found.structured_content, call_id=good_id
        )
        assert good.verified is True
        refund = await agent.mcp.call_tool("process_refund", {"order_id": "A-1001"})
        assert refund.is_error is False
