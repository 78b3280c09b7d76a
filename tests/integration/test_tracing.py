"""Traces of governed calls inside the real proxy app (the SDK's in-memory exporter): the span
tree, names and MCP semantic-convention attributes of an allowed, a denied, a held-and-approved
call and an upstream failure, and a client's ``traceparent`` as the parent, passed upstream."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from helio_proxy.app import HelioApp
from helio_proxy.audit.redact import Redactor
from helio_proxy.config import load_config_text
from helio_proxy.telemetry.tracing import Tracing
from tests.e2e.conftest import free_port
from tests.harness import mcp_upstream, proxy_config, serve_asgi
from tests.integration.approval_support import ALICE, HEADERS, approval_config, decide, held_ticket

POLICIES = """
policies:
  rules:
    - match: {tool: 'delete_*'}
      action: deny
    - name: approve-payments
      match: {tool: create_payment}
      action: require_approval
      approval: {timeout: 1m}
"""
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


class Traces:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.tracing = Tracing(provider, MeterProvider(metric_readers=[self.reader]), True, Redactor())

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def tree(self, server: ReadableSpan) -> list[tuple[str, SpanKind]]:
        """The server span's children (name, kind), in start order."""
        assert server.context is not None
        children = [
            s for s in self.spans() if s.parent is not None and s.parent.span_id == server.context.span_id
        ]
        return [(s.name, s.kind) for s in sorted(children, key=lambda s: s.start_time or 0)]

    def server(self, tool: str) -> ReadableSpan:
        [span] = [s for s in self.spans() if s.kind is SpanKind.SERVER and s.name == f"tools/call {tool}"]
        return span

    def metric_points(self, name: str) -> int:
        """How many measurements the histogram ``name`` holds."""
        collected = self.reader.get_metrics_data()
        data: dict[str, Any] = json.loads(collected.to_json()) if collected is not None else {}
        return sum(
            int(point["count"])
            for resource in data.get("resource_metrics", [])
            for scope in resource["scope_metrics"]
            for metric in scope["metrics"]
            if metric["name"] == name
            for point in metric["data"]["data_points"]
        )


@asynccontextmanager
async def traced_proxy(config: str, traces: Traces) -> AsyncGenerator[HelioApp]:
    app = HelioApp(
        load_config_text(config, path="test.yaml"), out=io.StringIO(), environ={}, tracing=traces.tracing
    )
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def post_call(
    url: str, tool: str, arguments: dict[str, Any], request_id: int = 1, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(
            url,
            json=body,
            headers={**HEADERS, "x-helio-session-id": "agent-1", "mcp-protocol-version": "2025-06-18"},
        )
    if response.headers["content-type"].startswith("application/json"):
        return response.json()
    return json.loads([line for line in response.text.splitlines() if line.startswith("data:")][-1][5:])


async def test_allowed_denied_and_held_calls_have_their_span_trees() -> None:
    traces = Traces()
    async with (
        mcp_upstream(json_response=True, stateless=True) as upstream,
        traced_proxy(approval_config(upstream, POLICIES), traces) as app,
    ):
        allowed = await post_call(app.mcp_url, "search_docs", {"query": "q"}, 1)
        denied = await post_call(app.mcp_url, "delete_user", {"user_id": "u"}, 2)
        held = asyncio.create_task(
            post_call(app.mcp_url, "create_payment", {"amount": 5, "currency": "EUR"}, 3)
        )
        ticket = await held_ticket(app)
        assert (await decide(app, ticket["id"], "approve", ALICE)).status_code == 200
        approved = await held
    assert "result" in allowed
    assert "error" in denied
    assert "result" in approved

    ok = traces.server("search_docs")
    attributes = dict(ok.attributes or {})
    assert ok.kind is SpanKind.SERVER
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == "search_docs"
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["jsonrpc.request.id"] == "1"
    assert attributes["mcp.protocol.version"] == "2025-06-18"
    assert attributes["network.transport"] == "tcp"
    assert attributes["helio.decision"] == "allow"
    assert "error.type" not in attributes
    assert json.loads(str(attributes["helio.tool.arguments"])) == {"query": "q"}
    assert ok.parent is None  # no traceparent: a new trace
    assert traces.tree(ok) == [
        ("helio.policy", SpanKind.INTERNAL),
        ("helio.limits", SpanKind.INTERNAL),
        ("tools/call search_docs", SpanKind.CLIENT),
    ]

    no = traces.server("delete_user")
    attributes = dict(no.attributes or {})
    assert attributes["helio.decision"] == "deny"
    assert attributes["helio.block_reason"] == "policy_denied"
    assert attributes["error.type"] == "policy_denied"
    assert traces.tree(no) == [("helio.policy", SpanKind.INTERNAL)]  # never forwarded

    paid = traces.server("create_payment")
    attributes = dict(paid.attributes or {})
    assert attributes["helio.decision"] == "require_approval"
    assert attributes["helio.rule"] == "approve-payments"
    assert attributes["helio.approval.status"] == "approved"
    assert float(attributes["helio.approval.wait_ms"]) > 0  # pyright: ignore[reportArgumentType]
    assert traces.tree(paid) == [
        ("helio.policy", SpanKind.INTERNAL),
        ("helio.approval", SpanKind.INTERNAL),
        ("helio.limits", SpanKind.INTERNAL),
        ("tools/call create_payment", SpanKind.CLIENT),
    ]
    [hold] = [s for s in traces.spans() if s.name == "helio.approval"]
    assert dict(hold.attributes or {})["helio.decision"] == "allow"
    assert traces.metric_points("mcp.server.operation.duration") == 3
    assert traces.metric_points("mcp.client.operation.duration") == 2


async def test_an_upstream_failure_marks_the_server_and_client_spans() -> None:
    traces = Traces()
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    async with traced_proxy(proxy_config(dead), traces) as app:
        failed = await post_call(app.mcp_url, "search_docs", {"query": "q"})
    assert failed["error"]["data"]["failure_class"] == "upstream_forward_error"
    server = traces.server("search_docs")
    assert dict(server.attributes or {})["error.type"] == "upstream_forward_error"
    assert server.status.status_code.name == "ERROR"
    [client] = [s for s in traces.spans() if s.kind is SpanKind.CLIENT]
    assert dict(client.attributes or {})["error.type"] == "upstream_forward_error"
    assert traces.tree(server) == [
        ("helio.policy", SpanKind.INTERNAL),
        ("helio.limits", SpanKind.INTERNAL),
        ("tools/call search_docs", SpanKind.CLIENT),
    ]


async def test_a_clients_traceparent_is_the_parent_and_reaches_the_upstream_in_meta() -> None:
    received: list[dict[str, Any]] = []

    async def endpoint(request: Request) -> JSONResponse:
        message = json.loads(await request.body())
        received.append(message)
        return JSONResponse(
            {"jsonrpc": "2.0", "id": message["id"], "result": {"content": [], "isError": False}}
        )

    traces = Traces()
    upstream_app = Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])])
    async with (
        serve_asgi(upstream_app, lifespan="off") as base,
        traced_proxy(proxy_config(f"{base}/mcp"), traces) as app,
    ):
        answer = await post_call(
            app.mcp_url, "lookup", {}, 7, meta={"traceparent": TRACEPARENT, "tracestate": "k=v"}
        )
    assert "result" in answer
    server = traces.server("lookup")
    assert server.parent is not None
    assert server.parent.is_remote
    assert format(server.parent.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_ID
    [client] = [s for s in traces.spans() if s.kind is SpanKind.CLIENT]
    assert client.context is not None
    [call] = [m for m in received if m.get("method") == "tools/call"]
    meta = call["params"]["_meta"]
    assert meta["traceparent"] == f"00-{TRACE_ID}-{format(client.context.span_id, '016x')}-01"
    assert meta["tracestate"] == "k=v"
