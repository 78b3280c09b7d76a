"""The SERVER span's network attributes by agent transport, and its error attributes for a JSON-RPC
error answer (MCP semantic conventions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helio_proxy.audit.records import ToolCallRecord
from helio_proxy.gateway.exchange import Inbound, JsonReply, Reply
from helio_proxy.gateway.messages import message_inbound
from helio_proxy.jsonrpc import parse
from helio_proxy.telemetry.tracing import Tracing

CALL = parse(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup","arguments":{}}}')


async def served(inbound: Inbound, answer: dict[str, Any] | None = None) -> dict[str, object]:
    """The attributes of the SERVER span ``inbound`` is served in; the call is forwarded and the
    upstream answers ``answer`` (a result by default), relayed as the proxy's reply."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, MeterProvider())
    response = {"jsonrpc": "2.0", "id": 1, **(answer or {"result": {"content": []}})}

    async def handle(_: Inbound) -> Reply:
        success = "result" in response
        record = ToolCallRecord(
            timestamp=datetime.now(UTC), tool_name="lookup", upstream_response=response, success=success
        )
        tracing.observe(record)  # as the audit trail does when the record is produced
        return JsonReply(200, json.dumps(response).encode(), payload=response)

    await tracing.server(inbound, handle)
    [span] = exporter.get_finished_spans()
    return dict(span.attributes or {})


async def test_a_stdio_call_is_over_a_pipe_with_no_client_address() -> None:
    attributes = await served(message_inbound(CALL, "session-1"))
    assert attributes["network.transport"] == "pipe"
    assert attributes["mcp.session.id"] == "session-1"
    assert "network.protocol.name" not in attributes
    assert "client.address" not in attributes


async def test_an_http_call_names_the_clients_address_and_port() -> None:
    attributes = await served(Inbound(message=CALL, headers={}, peer=("192.0.2.7", 51234)))
    assert attributes["network.transport"] == "tcp"
    assert attributes["network.protocol.name"] == "http"
    assert attributes["client.address"] == "192.0.2.7"
    assert attributes["client.port"] == 51234


async def test_a_json_rpc_error_from_the_upstream_is_its_code_not_a_tool_error() -> None:
    answer = {"error": {"code": -32602, "message": "unknown argument"}}
    attributes = await served(Inbound(message=CALL, headers={}), answer)
    assert attributes["error.type"] == "-32602"
    assert attributes["rpc.response.status_code"] == "-32602"


async def test_a_result_has_no_error_attributes() -> None:
    attributes = await served(Inbound(message=CALL, headers={}))
    assert "error.type" not in attributes
    assert "rpc.response.status_code" not in attributes
