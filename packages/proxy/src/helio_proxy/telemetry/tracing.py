"""OpenTelemetry traces of ``tools/call`` requests, in the MCP semantic conventions.

Off by default. When on, the app wraps the pieces a call passes through (nothing is wrapped
when off, and the gateway's only cost is one ``is None`` check):

- the gateway's ``tools/call`` → a SERVER span ``tools/call {tool}`` (parent: the ``traceparent``
  in ``params._meta``, else in the HTTP headers);
- the policy decision → a ``helio.policy`` child span;
- the approval gate → ``helio.approval`` (the hold), the limit gate → ``helio.limits``;
- the upstream client → a CLIENT span ``tools/call {tool}`` whose context goes upstream as
  ``params._meta.traceparent`` / ``tracestate``.

The call's outcome (decision, block reason, rule, approval wait, upstream failure) is read from
its audit record when the record is produced, so spans and the audit trail never disagree.
"""

from __future__ import annotations

import contextvars
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from opentelemetry import context as otel_context
from opentelemetry.metrics import Histogram, MeterProvider
from opentelemetry.propagate import extract
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from helio_proxy.audit.records import AnyRecord, ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.config.telemetry import TracingConfig
from helio_proxy.gateway.exchange import (
    Answer,
    Inbound,
    JsonReply,
    MessageStream,
    Reply,
    StatusAnswer,
    StreamReply,
    Upstream,
    UpstreamMessage,
)
from helio_proxy.governance import ApprovalGate, GovernedCall, LimitGate, Settlement
from helio_proxy.jsonrpc import Message, dumps
from helio_proxy.policy import Allow, Decision, RateLimit, RequireApproval, SpendLimit

SCOPE: Final = "helio_proxy"
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_CALL: contextvars.ContextVar[Span | None] = contextvars.ContextVar("helio_call_span", default=None)
"""The SERVER span of the ``tools/call`` being handled (the audit observer annotates it)."""

DURATION_BUCKETS: Final = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
"""The MCP semantic conventions' advice for ``mcp.*.operation.duration``."""


def enabled_by(config: TracingConfig, environ: Mapping[str, str]) -> bool:
    """Whether traces are on: the config, or the standard ``OTEL_*`` variables."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if config.enabled:
        return True
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "otlp":
        return True
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def otlp_providers(config: TracingConfig, environ: Mapping[str, str]) -> tuple[TracerProvider, MeterProvider]:
    """Tracer and meter providers exporting with OTLP over HTTP."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or config.service_name})
    tracer_provider = SdkTracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint)))
    metrics_endpoint = None
    if config.endpoint and config.endpoint.endswith("/v1/traces"):
        metrics_endpoint = config.endpoint[: -len("/v1/traces")] + "/v1/metrics"
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=metrics_endpoint))
    return tracer_provider, SdkMeterProvider(resource=resource, metric_readers=[reader])


def _carrier(meta: Any) -> dict[str, str]:
    if not isinstance(meta, dict):
        return {}
    meta = cast(dict[str, Any], meta)
    return {key: value for key in ("traceparent", "tracestate") if isinstance(value := meta.get(key), str)}


def _error_code(payload: Any) -> str | None:
    """The JSON-RPC error code of a response, as a string (the conventions' ``rpc.response.status_code``)."""
    if not isinstance(payload, dict):
        return None
    error = cast(dict[str, Any], payload).get("error")
    if not isinstance(error, dict):
        return None
    code = cast(dict[str, Any], error).get("code")
    return str(code) if isinstance(code, int) and not isinstance(code, bool) else None


@dataclass
class Tracing:
    """Spans and MCP duration histograms for governed calls (built only when traces are on)."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    capture_arguments: bool = False
    redactor: Redactor | None = None

    def __post_init__(self) -> None:
        self.tracer: Tracer = self.tracer_provider.get_tracer(SCOPE)
        meter = self.meter_provider.get_meter(SCOPE)
        advice = list(DURATION_BUCKETS)
        self.server_duration: Histogram = meter.create_histogram(
            "mcp.server.operation.duration",
            unit="s",
            description="Duration of MCP requests as the proxy served them.",
            explicit_bucket_boundaries_advisory=advice,
        )
        self.client_duration: Histogram = meter.create_histogram(
            "mcp.client.operation.duration",
            unit="s",
            description="Duration of MCP requests the proxy sent upstream.",
            explicit_bucket_boundaries_advisory=advice,
        )

    # -- the SERVER span ---------------------------------------------------------------------

    async def server(self, inbound: Inbound, handle: Callable[[Inbound], Awaitable[Reply]]) -> Reply:
        """Run ``handle`` (the gateway's governed path) inside the call's SERVER span."""
        message = inbound.message
        params = message.params or {}
        tool = params.get("name")
        tool = tool if isinstance(tool, str) else ""
        carrier = _carrier(params.get("_meta")) or {
            key: value for key in ("traceparent", "tracestate") if (value := inbound.headers.get(key))
        }
        parent = extract(carrier) if carrier else None
        attributes: dict[str, Any] = {
            "mcp.method.name": "tools/call",
            "gen_ai.tool.name": tool,
            "gen_ai.operation.name": "execute_tool",
            "network.transport": inbound.network,
        }
        if inbound.network == "tcp":
            attributes["network.protocol.name"] = "http"
        if inbound.peer is not None:
            attributes["client.address"], attributes["client.port"] = inbound.peer
        if message.id is not None:
            attributes["jsonrpc.request.id"] = str(message.id)
        version = inbound.headers.get("mcp-protocol-version")
        if version:
            attributes["mcp.protocol.version"] = version
        session = inbound.headers.get("mcp-session-id") or inbound.transport_session_id
        if session:
            attributes["mcp.session.id"] = session
        if self.capture_arguments and self.redactor is not None:
            attributes["helio.tool.arguments"] = json.dumps(self.redactor.scrub(params.get("arguments")))
        span = self.tracer.start_span(
            f"tools/call {tool}".rstrip(), context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        started = time.perf_counter()
        token = otel_context.attach(set_span_in_context(span))
        call_token = _CALL.set(span)
        streamed = False
        try:
            reply = await handle(inbound)
            if isinstance(reply, JsonReply) and (code := _error_code(reply.payload)) is not None:
                span.set_attribute("rpc.response.status_code", code)
            if isinstance(reply, StreamReply):
                streamed = True
                return StreamReply(
                    reply.status, self._finish_after(reply.messages, span, started), reply.headers
                )
            return reply
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR))
            raise
        finally:
            _CALL.reset(call_token)
            otel_context.detach(token)
            if not streamed:
                self._end(span, started)

    async def _finish_after(
        self, messages: AsyncIterator[UpstreamMessage], span: Span, started: float
    ) -> AsyncIterator[UpstreamMessage]:
        _CALL.set(span)  # the record of a streamed answer is produced while it is relayed
        try:
            async for message in messages:
                yield message
        finally:
            _CALL.set(None)
            self._end(span, started)

    def _end(self, span: Span, started: float) -> None:
        attributes = {"mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool"}
        recorded = getattr(span, "attributes", None)
        error = cast(Mapping[str, Any], recorded).get("error.type") if isinstance(recorded, Mapping) else None
        if isinstance(error, str):
            attributes["error.type"] = error
        self.server_duration.record(time.perf_counter() - started, attributes)
        span.end()

    def observe(self, record: AnyRecord) -> None:
        """The call's audit record: its outcome as ``helio.*`` attributes (an audit observer)."""
        span = _CALL.get()
        if span is None or not isinstance(record, ToolCallRecord) or not span.is_recording():
            return
        attributes: dict[str, Any] = {
            "helio.decision": record.policy_decision,
            "helio.record_id": str(record.id),
        }
        if record.block_reason:
            attributes["helio.block_reason"] = record.block_reason
            attributes["error.type"] = record.block_reason
        if record.matched_rule:
            attributes["helio.rule"] = record.matched_rule
        if record.approval_status:
            attributes["helio.approval.status"] = record.approval_status
        if record.approval_wait_ms is not None:
            attributes["helio.approval.wait_ms"] = record.approval_wait_ms
        if record.proxy_compute_ms is not None:
            attributes["helio.overhead_ms"] = record.proxy_compute_ms
        upstream_code = _error_code(record.upstream_response)
        if record.upstream_error:
            failure = record.upstream_error.get("failure_class")
            attributes["error.type"] = failure if isinstance(failure, str) else "upstream_error"
        elif upstream_code is not None:  # the upstream answered with a JSON-RPC error
            attributes["error.type"] = upstream_code
            attributes["rpc.response.status_code"] = upstream_code
        elif record.success is False and record.block_reason is None:
            attributes["error.type"] = "tool_error"  # the upstream answered isError: true
        if "error.type" in attributes:
            span.set_status(Status(StatusCode.ERROR))
        if self.capture_arguments and self.redactor is not None and record.upstream_response is not None:
            attributes["helio.tool.result"] = json.dumps(
                self.redactor.scrub(record.upstream_response.get("result"))
            )
        span.set_attributes(attributes)

    # -- child spans -------------------------------------------------------------------------

    def decide(self, decide: Callable[[], Decision]) -> Decision:
        """The policy decision, in a ``helio.policy`` span."""
        with self.tracer.start_as_current_span("helio.policy") as span:
            decision = decide()
            span.set_attribute("helio.decision", decision.action)
            if decision.rule:
                span.set_attribute("helio.rule", decision.rule)
            return decision

    def gates(
        self, approvals: ApprovalGate | None, limits: LimitGate | None
    ) -> tuple[ApprovalGate | None, LimitGate | None]:
        """The enforcement gates, each stage in its own span."""
        return (
            _TracedApprovals(approvals, self.tracer) if approvals is not None else None,
            _TracedLimits(limits, self.tracer) if limits is not None else None,
        )

    def upstream(self, upstream: Upstream) -> Upstream:
        """The upstream client, sending each ``tools/call`` in a CLIENT span it propagates."""
        return _TracedUpstream(upstream, self)

    def shutdown(self) -> None:
        for provider in (self.tracer_provider, self.meter_provider):
            stop = getattr(provider, "shutdown", None)
            if stop is not None:
                stop()


def _settled(span: Span, settlement: Settlement) -> Settlement:
    decision = settlement.decision
    span.set_attribute("helio.decision", decision.action)
    if not isinstance(decision, Allow):
        span.set_attribute("helio.block_reason", decision.reason)
    span.set_attribute("helio.reservations", len(settlement.reservations))
    return settlement


class _TracedApprovals:
    def __init__(self, gate: ApprovalGate, tracer: Tracer) -> None:
        self.gate = gate
        self.tracer = tracer

    async def hold(self, decision: RequireApproval, call: GovernedCall) -> Settlement:
        with self.tracer.start_as_current_span("helio.approval") as span:
            return _settled(span, await self.gate.hold(decision, call))

    async def hold_budget(
        self, decision: Decision, call: GovernedCall, breached: list[dict[str, Any]]
    ) -> Settlement:
        with self.tracer.start_as_current_span(
            "helio.approval", attributes={"helio.approval.budget": True}
        ) as span:
            return _settled(span, await self.gate.hold_budget(decision, call, breached))


class _TracedLimits:
    def __init__(self, gate: LimitGate, tracer: Tracer) -> None:
        self.gate = gate
        self.tracer = tracer

    async def reserve(
        self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall, *, approved: bool = False
    ) -> Settlement:
        with self.tracer.start_as_current_span("helio.limits") as span:
            return _settled(span, await self.gate.reserve(decision, call, approved=approved))

    def peek(self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall) -> Settlement:
        return self.gate.peek(decision, call)

    def charges_nothing(self, decision: Allow | RateLimit | SpendLimit) -> bool:
        return False  # traced, every allowed call goes through reserve(): its helio.limits span


class _TracedUpstream:
    def __init__(self, upstream: Upstream, tracing: Tracing) -> None:
        self.inner = upstream
        self.tracing = tracing

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def listen(self, client_headers: Mapping[str, str]) -> MessageStream | StatusAnswer:
        return await self.inner.listen(client_headers)

    async def end_session(self, client_headers: Mapping[str, str]) -> StatusAnswer:
        return await self.inner.end_session(client_headers)

    async def notify(self, message: Message, client_headers: Mapping[str, str]) -> StatusAnswer:
        return await self.inner.notify(message, client_headers)

    async def send(self, message: Message, client_headers: Mapping[str, str]) -> Answer:
        if _CALL.get() is None or message.method != "tools/call":
            return await self.inner.send(message, client_headers)
        request = message.payload
        params = cast(dict[str, Any], request.get("params") or {})
        tool = params.get("name") if isinstance(params.get("name"), str) else ""
        attributes = {
            "mcp.method.name": "tools/call",
            "gen_ai.tool.name": tool,
            "gen_ai.operation.name": "execute_tool",
            "network.transport": "tcp",
        }
        if request.get("id") is not None:
            attributes["jsonrpc.request.id"] = str(request["id"])
        started = time.perf_counter()
        with self.tracing.tracer.start_as_current_span(
            f"tools/call {tool}".rstrip(), kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            meta = params.get("_meta")
            meta = {**cast(dict[str, Any], meta)} if isinstance(meta, dict) else {}
            meta.pop("tracestate", None)
            meta.update(carrier)
            payload = {**request, "params": {**params, "_meta": meta}}
            outgoing = Message(message.kind, payload, dumps(payload))
            duration_attributes = {"mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool"}
            try:
                answer = await self.inner.send(outgoing, client_headers)
            except Exception as exc:
                failure = getattr(exc, "failure_class", None)
                error = failure if isinstance(failure, str) else type(exc).__qualname__
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR))
                self.tracing.client_duration.record(
                    time.perf_counter() - started, {**duration_attributes, "error.type": error}
                )
                raise
            self.tracing.client_duration.record(time.perf_counter() - started, duration_attributes)
            return answer


def tracing_from(
    config: TracingConfig, environ: Mapping[str, str] | None = None, redactor: Redactor | None = None
) -> Tracing | None:
    """The app's :class:`Tracing`, or ``None`` when traces are off."""
    env = os.environ if environ is None else environ
    if not enabled_by(config, env):
        return None
    tracer_provider, meter_provider = otlp_providers(config, env)
    return Tracing(tracer_provider, meter_provider, config.capture_arguments, redactor)
