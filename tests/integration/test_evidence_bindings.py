"""Evidence bound to its source tool and to the call it vouches for, through the real proxy and SDK.

The refund example's tools behind the proxy (in process), the official MCP client sending the SDK's
session header, and the SDK marking evidence with the call id the proxy returns in the result's
``_meta``. A refund of A-1002 must not pass on a lookup of A-1001, nor on another tool's call id;
the allowed refund's audit record names the evidence that satisfied the gate, on both stores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from examples.refund.server import build_server
from helio import HelioContext, call_id_of
from helio_proxy.app import HelioApp
from helio_proxy.audit.query import AuditFilter, fetch
from helio_proxy.store import create_store
from helio_proxy.store.testing import postgres_schema
from tests.harness import proxy_config, run_proxy, serve_asgi

BOUND = """
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


@dataclass
class Agent:
    mcp: Client
    ctx: HelioContext
    app: HelioApp

    async def blocked(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        with pytest.raises(MCPError) as caught:
            await self.mcp.call_tool(tool, arguments)
        assert caught.value.code == -32001
        data: dict[str, Any] = caught.value.data
        assert data["blocked"] is True
        return data


@contextmanager
def _store_url(backend: Literal["sqlite", "postgres"], tmp_path: Path):  # type: ignore[no-untyped-def]
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        with postgres_schema() as url:
            yield url


@asynccontextmanager
async def refund_stack(
    policies: str, *, json_response: bool = True, store_url: str | None = None
) -> AsyncIterator[Agent]:
    upstream = build_server().streamable_http_app(json_response=json_response, stateless_http=True)
    extra = policies + (f"store:\n  url: '{store_url}'\n" if store_url else "")
    async with serve_asgi(upstream) as base, run_proxy(proxy_config(f"{base}/mcp", extra)) as app:
        assert app.sdk_token is not None
        async with (
            HelioContext(app.sideband_url, token=app.sdk_token.value) as ctx,
            httpx2.AsyncClient(headers=ctx.headers, timeout=10) as http,
            Client(streamable_http_client(app.mcp_url, http_client=http)) as mcp,
        ):
            yield Agent(mcp, ctx, app)


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "sse"])
async def test_every_allowed_tool_result_carries_the_proxy_call_id_in_meta(json_response: bool) -> None:
    async with refund_stack(BOUND, json_response=json_response) as agent:
        result = await agent.mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
        call_id = call_id_of(result)
        assert call_id is not None
        assert len(call_id) == 32
        assert result.meta is not None
        assert result.meta["io.gethelio/call-id"] == call_id
        assert agent.ctx.call_id_of(result.model_dump(by_alias=True)) == call_id
        state = (await agent.ctx.aget_evidence_state()).state
        assert [c.call_id for c in state.completed_tools] == [call_id]
        failed = await agent.mcp.call_tool("orders.lookup", {"order_id": "A-9999"})
        assert failed.is_error is True
        assert call_id_of(failed) not in (None, call_id)


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "sse"])
async def test_a_lookup_of_another_order_does_not_open_the_refund_gate(json_response: bool) -> None:
    async with refund_stack(BOUND, json_response=json_response) as agent:
        lookup = await agent.mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
        receipt = await agent.ctx.amark_evidence(
            "orders.lookup", "order_data", lookup.structured_content, call_id=call_id_of(lookup)
        )
        assert receipt.verified is True

        block = await agent.blocked("process_refund", {"order_id": "A-1002"})
        assert block["reason"] == "evidence_mismatch"
        assert block["retry_allowed"] is True
        assert block["mismatched_evidence"] == [
            {
                "key": "order_data",
                "binding": "match",
                "path": "$.order_id",
                "source_path": "$.order_id",
                "expected": "A-1002",
                "found": "A-1001",
            }
        ]
        assert "order_id='A-1002'" in block["suggestion"]

        # The same flow with the matching lookup passes.
        right = await agent.mcp.call_tool("orders.lookup", {"order_id": "A-1002"})
        await agent.ctx.amark_result("orders.lookup", "order_data", right)
        refund = await agent.mcp.call_tool("process_refund", {"order_id": "A-1002"})
        assert refund.is_error is False
        assert refund.structured_content is not None
        assert refund.structured_content["order_id"] == "A-1002"


async def test_evidence_marked_with_another_tools_call_id_does_not_satisfy_from() -> None:
    async with refund_stack(BOUND) as agent:
        await agent.mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
        verify = await agent.mcp.call_tool(
            "customer.verify", {"order_id": "A-1001", "email": "alice@example.com"}
        )
        assert verify.is_error is False
        # The case: the evidence is verified (it names a real, successful call) ...
        receipt = await agent.ctx.amark_evidence(
            "customer.verify", "order_data", verify.structured_content, call_id=call_id_of(verify)
        )
        assert receipt.verified is True
        # ... but of customer.verify, not of orders.lookup.
        block = await agent.blocked("process_refund", {"order_id": "A-1001"})
        assert block["reason"] == "evidence_mismatch"
        assert block["mismatched_evidence"] == [
            {"key": "order_data", "binding": "from", "expected": "orders.lookup", "found": "customer.verify"}
        ]
        # Claiming the tool name does not help: the call id names a customer.verify call.
        receipt = await agent.ctx.amark_evidence(
            "orders.lookup", "order_data", verify.structured_content, call_id=call_id_of(verify)
        )
        assert receipt.verified is False
        block = await agent.blocked("process_refund", {"order_id": "A-1001"})
        assert block["reason"] == "evidence_missing"
        assert block["unverified_evidence"] == ["order_data"]


async def test_an_agent_following_only_the_first_blocks_feedback_succeeds_on_its_next_try() -> None:
    async with refund_stack(BOUND) as agent:
        block = await agent.blocked("process_refund", {"order_id": "A-1002"})
        assert block["reason"] == "evidence_missing"
        assert block["suggestion"] == (
            "1. Call orders.lookup with order_id='A-1002' and keep its result (it must succeed). "
            "2. Mark that result as evidence 'order_data' with the call_id of that orders.lookup call: "
            "ctx.mark_evidence('orders.lookup', 'order_data', data, call_id=ctx.call_id_of(result)) "
            "(the id is in result._meta['io.gethelio/call-id']). "
            "3. Retry process_refund with the same arguments."
        )
        # Exactly those steps, in that order.
        result = await agent.mcp.call_tool("orders.lookup", {"order_id": "A-1002"})
        await agent.ctx.amark_evidence(
            "orders.lookup", "order_data", result.structured_content, call_id=agent.ctx.call_id_of(result)
        )
        refund = await agent.mcp.call_tool("process_refund", {"order_id": "A-1002"})
        assert refund.is_error is False


def _records(url: str, tool: str) -> list[dict[str, Any]]:
    store = create_store(url)
    store.open_sync()
    try:
        return store.read_sync(lambda c: fetch(c, AuditFilter(tool=tool), order="oldest"))
    finally:
        store.close_sync()


def _gated_records(url: str) -> list[dict[str, Any]]:
    return _records(url, "process_refund")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_the_allowed_gated_calls_audit_record_names_the_evidence_that_satisfied_it(
    backend: Literal["sqlite", "postgres"], tmp_path: Path
) -> None:
    with _store_url(backend, tmp_path) as url:
        async with refund_stack(BOUND, store_url=url) as agent:
            await agent.blocked("process_refund", {"order_id": "A-1001"})
            lookup = await agent.mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
            call_id = call_id_of(lookup)
            await agent.ctx.amark_result("orders.lookup", "order_data", lookup)
            refund = await agent.mcp.call_tool("process_refund", {"order_id": "A-1001"})
            assert refund.is_error is False
            session_id = agent.ctx.session_id
        blocked, allowed = _gated_records(url)
        (looked_up,) = _records(url, "orders.lookup")
    assert looked_up["id"].replace("-", "") == call_id  # the call id is its audit record's id
    assert blocked["policy_decision"] == "deny"
    assert blocked["evidence_chain"]["gate"]["missing_evidence"] == ["order_data"]
    assert allowed["policy_decision"] == "allow"
    assert allowed["matched_rule"] == "refund-needs-lookup"
    assert allowed["session_id"] == session_id
    assert allowed["evidence_chain"]["gate"] == {
        "passed": True,
        "satisfied": [
            {
                "evidence": "order_data",
                "source_tool": "orders.lookup",
                "call_id": call_id,
                "verified": True,
                "produced": False,
                "bound": {"$.order_id": "A-1001"},
            }
        ],
    }
