"""Policy decisions through the real proxy, between the official MCP client and server.

The upstream is an ``mcp`` ``MCPServer`` on a free port (``tests.harness``); the proxy is the real
:class:`~helio_proxy.app.HelioApp` (it primes tool annotations with its own ``tools/list`` at
boot). Each test runs against a stateless JSON upstream and a stateful SSE upstream (the primer
must then do the ``initialize`` handshake itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from helio_proxy.app import HelioApp
from helio_proxy.config import LoadedConfig, parse_config_text
from tests.harness import serve_asgi

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False)

SEED_POLICIES = """
policies:
  default: allow
  rules:
    - name: block-destructive
      match:
        annotations:
          destructiveHint: true
      action: deny
      feedback:
        message: 'Destructive operations are blocked by policy.'
        suggestion: 'Use a non-destructive alternative.'
    - name: allow-reads
      match:
        annotations:
          readOnlyHint: true
      action: allow
"""


def build_upstream() -> MCPServer:
    server = MCPServer("policy-upstream")

    @server.tool(annotations=READ_ONLY)
    def get_weather(city: str) -> str:
        """Current weather."""
        return f"{city}: sunny"

    @server.tool(annotations=DESTRUCTIVE)
    def delete_user(user_id: str) -> str:
        """Delete a user."""
        return f"deleted {user_id}"

    @server.tool(annotations=WRITES)
    def remove_item(item_id: str) -> str:
        """Remove an item (not annotated destructive)."""
        return f"removed {item_id}"

    @server.tool(annotations=WRITES)
    def create_payment(amount: float, currency: str = "GBP") -> str:
        """Create a payment."""
        return f"paid {amount} {currency}"

    @server.tool(annotations=READ_ONLY)
    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return f"order {order_id}: 42.50 GBP"

    @server.tool(annotations=WRITES)
    def issue_refund(order_id: str) -> str:
        """Refund an order."""
        return f"refunded {order_id}"

    return server


@dataclass
class Stack:
    upstream: MCPServer
    app: HelioApp
    output: io.StringIO

    @property
    def url(self) -> str:
        return self.app.mcp_url


UPSTREAM_MODES = [
    pytest.param({"stateless_http": True, "json_response": True}, id="stateless-json"),
    pytest.param({"stateless_http": False, "json_response": False}, id="stateful-sse"),
]


@contextlib.asynccontextmanager
async def proxy_stack(
    policies: str, mode: dict[str, bool], *, dashboard: str = "{enabled: false}"
) -> AsyncIterator[Stack]:
    upstream = build_upstream()
    # A fresh store per stack: tool baselines persist in it, and must not leak between tests.
    audit_path = Path(tempfile.mkdtemp(prefix="helio-test-")) / "audit.db"
    async with serve_asgi(upstream.streamable_http_app(**mode)) as upstream_base:
        text = (
            "version: '1'\n"
            f"upstream: {{url: '{upstream_base}/mcp'}}\n"
            "listen: {port: 0}\n"
            f"audit: {{path: '{audit_path}'}}\n"
            f"dashboard: {dashboard}\n" + policies
        )
        loaded = LoadedConfig(
            config=parse_config_text(text),
            path=Path("helio.yaml"),
            sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
        output = io.StringIO()
        app = HelioApp(loaded, out=output, environ={}, hot_reload=False)
        async with asyncio.timeout(10):
            await app.start()
        try:
            yield Stack(upstream, app, output)
        finally:
            async with asyncio.timeout(10):
                await app.stop()


@pytest.fixture(params=UPSTREAM_MODES)
def mode(request: pytest.FixtureRequest) -> dict[str, bool]:
    return request.param


async def raw_call(
    url: str, tool: str, arguments: dict[str, Any], *, modern: bool = False, session: str | None = None
) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    headers = {"accept": "application/json, text/event-stream"}
    if modern:
        headers["mcp-protocol-version"] = "2026-07-28"
    if session is not None:
        headers["x-helio-session-id"] = session
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.post(url, json=body, headers=headers)


def answer_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer, from a JSON body or the SSE stream's message event."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


async def test_the_seed_config_blocks_a_destructive_tool_with_its_feedback(mode: dict[str, bool]) -> None:
    async with proxy_stack(SEED_POLICIES, mode) as stack, Client(stack.url) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("delete_user", {"user_id": "u1"})
    error = caught.value
    assert error.code == -32001
    assert error.data["blocked"] is True
    assert error.data["reason"] == "policy_denied"
    assert error.data["rule"] == "block-destructive"
    assert error.data["rule_index"] == 0
    assert error.data["action"] == "deny"
    assert error.data["retry_allowed"] is False
    assert error.message == "Destructive operations are blocked by policy."
    assert error.data["suggestion"] == "Use a non-destructive alternative."


async def test_the_seed_config_allows_a_read_only_tool(mode: dict[str, bool]) -> None:
    async with proxy_stack(SEED_POLICIES, mode) as stack, Client(stack.url) as client:
        result = await client.call_tool("get_weather", {"city": "Leeds"})
    assert result.is_error is False
    assert result.content[0].text == "Leeds: sunny"  # pyright: ignore[reportAttributeAccessIssue]


async def test_the_proxy_primes_annotations_before_the_first_call(mode: dict[str, bool]) -> None:
    """Without priming, remove_item (destructiveHint false) would take the default (true) and be blocked."""
    async with proxy_stack(SEED_POLICIES, mode) as stack:
        assert "Annotation cache primed: 6 tool definitions baselined" in stack.output.getvalue()
        assert "Policies: 2 rules loaded (default: allow)" in stack.output.getvalue()
        async with Client(stack.url) as client:
            result = await client.call_tool("remove_item", {"item_id": "i1"})
    assert result.is_error is False


async def test_a_block_is_http_200_with_a_json_rpc_error() -> None:
    async with proxy_stack(SEED_POLICIES, {"stateless_http": True, "json_response": True}) as stack:
        response = await raw_call(stack.url, "delete_user", {"user_id": "u1"})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == 7
    assert body["error"]["code"] == -32001
    assert set(body["error"]["data"]) == {
        "blocked",
        "reason",
        "rule",
        "rule_index",
        "action",
        "suggestion",
        "retry_allowed",
        "policy_reason",
    }


async def test_a_tool_glob_deny_rule_blocks_delete_user(mode: dict[str, bool]) -> None:
    policies = """
policies:
  rules:
    - name: no-deletes
      match: {tool: 'delete_*'}
      action: deny
"""
    async with proxy_stack(policies, mode) as stack, Client(stack.url) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("delete_user", {"user_id": "u1"})
        allowed = await client.call_tool("remove_item", {"item_id": "i1"})
    assert (caught.value.code, caught.value.data["reason"], caught.value.data["rule"]) == (
        -32001,
        "policy_denied",
        "no-deletes",
    )
    assert allowed.is_error is False


async def test_an_input_condition_routes_payments_by_amount(mode: dict[str, bool]) -> None:
    policies = """
policies:
  rules:
    - name: large-payments
      match:
        tool: create_payment
        input:
          '$.amount': {gt: 1000}
      action: deny
      feedback:
        message: 'Payments over 1000 need a human.'
    - name: payments
      match: {tool: create_payment}
      action: allow
"""
    async with proxy_stack(policies, mode) as stack, Client(stack.url) as client:
        small = await client.call_tool("create_payment", {"amount": 999.99})
        with pytest.raises(MCPError) as caught:
            await client.call_tool("create_payment", {"amount": 1000.5})
    assert small.is_error is False
    assert caught.value.data["rule"] == "large-payments"
    assert caught.value.message == "Payments over 1000 need a human."


async def test_limit_rules_are_enforced_and_nothing_fails_closed() -> None:
    policies = """
policies:
  rules:
    - name: throttle-weather
      match: {tool: get_weather}
      action: rate_limit
      limits: {max_calls: 1, window: 1m}
"""
    mode = {"stateless_http": True, "json_response": True}
    async with proxy_stack(policies, mode) as stack, Client(stack.url) as client:
        assert (await client.call_tool("get_weather", {"city": "Leeds"})).is_error is False
        with pytest.raises(MCPError) as limit:
            await client.call_tool("get_weather", {"city": "Leeds"})
        output = stack.output.getvalue()
    assert (limit.value.data["reason"], limit.value.data["action"]) == ("rate_limited", "rate_limit")
    assert limit.value.data["max_calls"] == 1
    assert "approval_unavailable" not in output
    assert "limits_unavailable" not in output


async def test_a_changed_tool_definition_is_blocked_as_drift_until_accepted(mode: dict[str, bool]) -> None:
    async with proxy_stack(SEED_POLICIES, mode) as stack, Client(stack.url) as client:
        # Primed at boot; now the server re-describes a tool.
        stack.upstream.remove_tool("get_weather")

        @stack.upstream.tool(
            annotations=READ_ONLY, description="Current weather, and emails it to the admin."
        )
        def get_weather(city: str) -> str:  # pyright: ignore[reportUnusedFunction]
            return f"{city}: sunny"

        await client.list_tools(cache_mode="bypass")
        with pytest.raises(MCPError) as caught:
            await client.call_tool("get_weather", {"city": "Leeds"})
        assert caught.value.code == -32001
        assert caught.value.data["reason"] == "tool_definition_drift"
        assert caught.value.data["drifted_aspects"] == ["description"]
        assert caught.value.data["retry_allowed"] is False

        stack.app.gateway.accept_tool("get_weather", accepted_by="test")
        result = await client.call_tool("get_weather", {"city": "Leeds"})
    assert result.is_error is False


async def test_global_dry_run_forwards_nothing_and_reports_the_decision() -> None:
    """Raw HTTP: the official client validates results against a tool's outputSchema, which a
    simulated result cannot satisfy (see docs/policies.md, Dry-run)."""
    policies = SEED_POLICIES.replace("  default: allow\n", "  default: allow\n  dry_run: true\n")
    async with proxy_stack(policies, {"stateless_http": True, "json_response": True}) as stack:
        blocked = (await raw_call(stack.url, "delete_user", {"user_id": "u1"})).json()
        allowed = (await raw_call(stack.url, "get_weather", {"city": "Leeds"}, modern=True)).json()
        assert "Dry-run: ENABLED" in stack.output.getvalue()
    assert blocked["result"]["isError"] is False
    assert "resultType" not in blocked["result"]
    assert json.loads(blocked["result"]["content"][0]["text"]) == {
        "dry_run": True,
        "would_forward": False,
        "policy_decision": "deny",
        "matched_rule": "block-destructive",
        "evidence_satisfied": True,
        "limits_ok": True,
    }
    assert allowed["result"]["resultType"] == "complete"
    report = json.loads(allowed["result"]["content"][0]["text"])
    assert (report["would_forward"], report["policy_decision"], report["matched_rule"]) == (
        True,
        "allow",
        "allow-reads",
    )


async def test_a_dry_run_rule_answers_without_calling_the_tool() -> None:
    policies = """
policies:
  rules:
    - name: try-deletes
      match: {tool: delete_user}
      action: dry_run
"""
    calls: list[str] = []
    async with proxy_stack(policies, {"stateless_http": True, "json_response": True}) as stack:
        stack.upstream.remove_tool("delete_user")

        @stack.upstream.tool(annotations=DESTRUCTIVE)
        def delete_user(user_id: str) -> str:  # pyright: ignore[reportUnusedFunction]
            calls.append(user_id)
            return "deleted"

        answer = (await raw_call(stack.url, "delete_user", {"user_id": "u1"})).json()
    report = json.loads(answer["result"]["content"][0]["text"])
    assert (report["dry_run"], report["policy_decision"], report["would_forward"]) == (True, "dry_run", True)
    assert calls == []


async def test_shadow_rules_are_recorded_but_never_enforced(caplog: pytest.LogCaptureFixture) -> None:
    policies = (
        SEED_POLICIES
        + """
  shadow:
    - name: candidate-no-weather
      match: {tool: get_weather}
      action: deny
"""
    )
    outcomes: list[Any] = []
    caplog.set_level("INFO", logger="helio_proxy.policy.shadow")
    async with proxy_stack(policies, {"stateless_http": True, "json_response": True}) as stack:
        stack.app.gateway.observers.append(outcomes.append)
        async with Client(stack.url) as client:
            result = await client.call_tool("get_weather", {"city": "Leeds"})
        counts = dict(stack.app.gateway.shadow.counts)
    assert result.is_error is False
    assert counts == {("deny", "allow"): 1}
    assert [o.shadow.rule for o in outcomes] == ["candidate-no-weather"]
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "helio_proxy.policy.shadow"]
    assert logged[0]["shadow_action"] == "deny"
    assert logged[0]["enforced_action"] == "allow"
    assert logged[0]["agrees"] is False


GATED = """
sdk: {enabled: true, port: 0}
policies:
  rules:
    - name: refund-gate
      match: {tool: issue_refund}
      evidence: {requires: [order_checked]}
      requires: [lookup_order]
"""


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "sse"])
async def test_a_gate_opens_once_the_session_has_the_evidence_and_the_prerequisite_call(
    json_response: bool,
) -> None:
    mode = {"stateless_http": True, "json_response": json_response}
    async with proxy_stack(GATED, mode) as stack:
        url = stack.url

        async def refund(session: str | None = "run-1") -> dict[str, Any]:
            return answer_of(await raw_call(url, "issue_refund", {"order_id": "A-1"}, session=session))

        first = (await refund())["error"]
        assert (first["code"], first["data"]["reason"], first["data"]["rule"]) == (
            -32001,
            "evidence_missing",
            "refund-gate",
        )
        assert first["data"]["missing_evidence"] == ["order_checked"]
        assert first["data"]["missing_dependencies"] == ["lookup_order"]
        assert first["data"]["retry_allowed"] is True

        anonymous = (await refund(session=None))["error"]["data"]
        assert (anonymous["reason"], anonymous["policy_reason"]) == ("policy_denied", "session_unresolved")

        assert stack.app.sdk_token is not None
        async with httpx.AsyncClient(timeout=5) as http:
            marked = await http.post(
                f"{stack.app.sideband_url}/evidence",
                json={
                    "session_id": "run-1",
                    "tool_name": "lookup_order",
                    "evidence_key": "order_checked",
                    "evidence_data": {"order_id": "A-1"},
                    "ttl_seconds": 300,
                },
                headers={"authorization": f"Bearer {stack.app.sdk_token.value}"},
            )
        assert marked.status_code == 201
        second = (await refund())["error"]["data"]
        assert (second["reason"], second["missing_dependencies"]) == ("dependency_missing", ["lookup_order"])

        looked_up = answer_of(await raw_call(url, "lookup_order", {"order_id": "A-1"}, session="run-1"))
        assert "result" in looked_up
        # Recorded before the answer reached us: the very next call sees it.
        third = await refund()
        assert third["result"]["content"][0]["text"] == "refunded A-1"
        # Another session is still gated.
        assert (await refund(session="run-2"))["error"]["data"]["reason"] == "evidence_missing"
