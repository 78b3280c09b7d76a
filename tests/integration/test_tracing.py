"""Traces of governed calls inside the real proxy app (the SDK's in-memory exporter): the span
tree, names and MCP semantic-convention attributes of an allowed, a denied, a held-and-approved
call and an upstream failure, and a client's ``traceparent`` as the parent, passed upstream."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
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
from tests.harness import audit_records, mcp_upstream, proxy_config, serve_asgi
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


def observability_docs() -> str:
    return (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()


def assert_documented(spans: list[ReadableSpan], tools: tuple[str, ...]) -> None:
    """docs/observability.md names every span and attribute these spans carry."""
    docs = observability_docs()
    keys = {key for span in spans for key in span.attributes or {}}
    undocumented = sorted(key for key in keys if f"`{key}`" not in docs)
    assert not undocumented, f"span attributes missing from docs/observability.md: {undocumented}"
    names = {span.name for span in spans}
    for tool in tools:
        names = {name.replace(tool, "{tool}") for name in names}
    assert not [name for name in names if name not in docs]


class Traces:
    def __init__(self, redact: tuple[str, ...] = ()) -> None:
        """In-memory traces capturing arguments, redacted with the defaults plus ``redact`` (the
        config's ``audit.redact``, as the app passes it)."""
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.tracing = Tracing(provider, MeterProvider(metric_readers=[self.reader]), True, Redactor(redact))

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
    url: str,
    tool: str,
    arguments: dict[str, Any],
    request_id: int = 1,
    meta: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(
            url,
            json=body,
            headers={
                **HEADERS,
                "x-helio-session-id": "agent-1",
                "mcp-protocol-version": "2025-06-18",
                **(headers or {}),
            },
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
    assert attributes["network.protocol.name"] == "http"
    assert attributes["client.address"] == "127.0.0.1"
    assert isinstance(attributes["client.port"], int)
    assert attributes["client.port"] > 0
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
    assert attributes["rpc.response.status_code"] == "-32001"
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
    assert_documented(traces.spans(), ("search_docs", "delete_user", "create_payment"))


async def test_an_upstream_failure_marks_the_server_and_client_spans() -> None:
    traces = Traces()
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    async with traced_proxy(proxy_config(dead), traces) as app:
        failed = await post_call(app.mcp_url, "search_docs", {"query": "q"})
    assert failed["error"]["data"]["failure_class"] == "upstream_forward_error"
    server = traces.server("search_docs")
    assert dict(server.attributes or {})["error.type"] == "upstream_forward_error"
    assert dict(server.attributes or {})["rpc.response.status_code"] == "-32603"
    assert server.status.status_code.name == "ERROR"
    [client] = [s for s in traces.spans() if s.kind is SpanKind.CLIENT]
    assert dict(client.attributes or {})["error.type"] == "upstream_forward_error"
    assert traces.tree(server) == [
        ("helio.policy", SpanKind.INTERNAL),
        ("helio.limits", SpanKind.INTERNAL),
        ("tools/call search_docs", SpanKind.CLIENT),
    ]
    assert_documented(traces.spans(), ("search_docs",))


@asynccontextmanager
async def recording_upstream(result: dict[str, Any]) -> AsyncGenerator[tuple[str, list[dict[str, Any]]]]:
    """A bare JSON-RPC upstream listing ``lookup`` and ``login`` and answering every call with
    ``result``; its URL and what it received."""
    received: list[dict[str, Any]] = []

    async def endpoint(request: Request) -> JSONResponse:
        message = json.loads(await request.body())
        received.append(message)
        tools = [{"name": name, "inputSchema": {"type": "object"}} for name in ("lookup", "login")]
        answer = {"tools": tools} if message.get("method") == "tools/list" else result
        return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": answer})

    upstream_app = Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])])
    async with serve_asgi(upstream_app, lifespan="off") as base:
        yield f"{base}/mcp", received


@pytest.mark.parametrize("carrier", ["params._meta", "http headers"])
async def test_a_clients_traceparent_is_the_parent_and_reaches_the_upstream_in_meta(carrier: str) -> None:
    traces = Traces()
    context = {"traceparent": TRACEPARENT, "tracestate": "k=v"}
    meta, headers = (context, None) if carrier == "params._meta" else (None, context)
    async with (
        recording_upstream({"content": [], "isError": False}) as (url, received),
        traced_proxy(proxy_config(url), traces) as app,
    ):
        answer = await post_call(app.mcp_url, "lookup", {}, 7, meta=meta, headers=headers)
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


async def test_opt_in_arguments_and_results_are_redacted_like_the_audit_trail(tmp_path: Path) -> None:
    """A tool that answers ``isError: true`` is a ``tool_error`` (MCP semantic conventions)."""
    traces = Traces(redact=("customer_ref",))
    result = {"content": [{"type": "text", "text": "login failed: password=hunter2"}], "isError": True}
    arguments = {
        "query": "q",
        "api_key": "sk-live-123",
        "customer_ref": "C-42",
        "card": "4111 1111 1111 1111",
    }
    async with (
        recording_upstream(result) as (url, _),
        traced_proxy(
            proxy_config(url, audit_path=str(tmp_path / "a.db"), audit_extra="  redact: [customer_ref]\n"),
            traces,
        ) as app,
    ):
        answer = await post_call(app.mcp_url, "login", arguments)
    assert answer["result"]["isError"] is True
    attributes = dict(traces.server("login").attributes or {})
    assert attributes["error.type"] == "tool_error"
    assert traces.server("login").status.status_code.name == "ERROR"
    traced_arguments = json.loads(str(attributes["helio.tool.arguments"]))
    traced_result = json.loads(str(attributes["helio.tool.result"]))
    assert traced_arguments == {
        "query": "q",
        "api_key": "[REDACTED]",
        "customer_ref": "[REDACTED]",
        "card": "[CARD ...1111]",
    }
    assert "hunter2" not in json.dumps(traced_result)
    [record] = audit_records(tmp_path / "a.db", record_kind="tool_call")
    assert traced_arguments == record["tool_input"]
    assert traced_result == record["upstream_response"]["result"]
