"""Recording one ``tools/call``: what the pipeline learns along the way becomes one record.

The gateway opens a :class:`CallAudit` when a call arrives and ends it in exactly one of
three ways, each producing exactly one :class:`ToolCallRecord`:

* ``block(...)`` / ``reject(reason)``: the call is answered by the proxy and never forwarded;
* ``forwarding()`` → the observer the relay calls with the upstream's answer, then
  ``settle(status)`` for a JSON reply or ``hold(chunks, status)`` for an SSE reply;
* the stream closes before any answer was seen: the record says so.

``decide(...)`` adds what governance concluded (decision, rule, evidence, approval) before
forwarding. In ``strict`` durability ``settle`` returns, and ``hold`` releases the event carrying
the response, only once the record is committed (bounded by ``strict_wait``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final, Protocol

from helio_proxy.audit.clock import SYSTEM_CLOCK, Clock
from helio_proxy.audit.records import NAMELESS_TOOL, AnyRecord, SessionSource, ToolCallRecord, call_succeeded
from helio_proxy.config.sections import SessionConfig
from helio_proxy.errors import UpstreamError
from helio_proxy.ids import new_uuid
from helio_proxy.session.identity import SessionIdentity, resolve_session

log = logging.getLogger("helio.audit")

STRICT_WAIT_SECONDS: Final = 10.0
"""Longest a response waits for its record to commit in strict mode before it is released anyway."""

Observer = Callable[[dict[str, Any] | None, UpstreamError | None], None]


class RecordSink(Protocol):
    """Where records go (the :class:`~helio_proxy.audit.writer.AuditWriter`, or a test's list)."""

    def submit(self, record: AnyRecord) -> asyncio.Future[bool] | None: ...


class Auditor:
    """Opens a :class:`CallAudit` per call and submits records to the writer (if any)."""

    def __init__(
        self,
        writer: RecordSink | None,
        *,
        session: SessionConfig | None = None,
        environment: str | None = None,
        config_sha256: str | Callable[[], str | None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        strict_wait: float = STRICT_WAIT_SECONDS,
        unavailable: Callable[[], str | None] | None = None,
    ) -> None:
        self.writer = writer
        self._unavailable = unavailable
        self.identity = (session or SessionConfig()).identity
        self.environment = environment
        self._config_sha256 = config_sha256
        self.clock = clock
        self.strict_wait = strict_wait
        self.observers: list[Callable[[AnyRecord], None]] = []
        """Called with every record submitted (metrics); one must never fail a call."""

    def refusal(self) -> str | None:
        """Why calls must be refused now (strict durability with a store that cannot be written),
        or ``None``."""
        return self._unavailable() if self._unavailable is not None else None

    @property
    def config_sha256(self) -> str | None:
        """The hash of the config in force now (given as a function, it follows hot reloads)."""
        value = self._config_sha256
        return value() if callable(value) else value

    def begin(
        self,
        params: Mapping[str, Any] | None,
        request_id: str | int | None,
        headers: Mapping[str, str],
        *,
        transport_session_id: str | None = None,
        identity: SessionIdentity | None = None,
    ) -> CallAudit:
        """Start recording a call that has just arrived (``identity``: its session, when the caller
        has resolved it already; otherwise it is resolved here)."""
        return CallAudit(
            self, params, request_id, headers, transport_session_id=transport_session_id, identity=identity
        )

    def submit(self, record: AnyRecord) -> asyncio.Future[bool] | None:
        """Hand any kind of record to the writer (a commit future in strict mode)."""
        for observer in self.observers:
            try:
                observer(record)
            except Exception:  # metrics must never fail a call or lose its record
                log.exception("audit record observer failed")
        if self.writer is None:
            return None
        return self.writer.submit(record)

    @property
    def refuses_calls(self) -> bool:
        """``strict`` durability and the last audit batch failed (the store cannot be written): a
        call that would be forwarded now could not be recorded, so it is blocked
        (``audit_unavailable``). Cleared by the next batch that commits (the blocked calls' own
        records are such batches)."""
        return self.refusal() is not None


class CallAudit:
    """The facts about one call, gathered until its record is written."""

    def __init__(
        self,
        auditor: Auditor,
        params: Mapping[str, Any] | None,
        request_id: str | int | None,
        headers: Mapping[str, str],
        *,
        transport_session_id: str | None = None,
        identity: SessionIdentity | None = None,
    ) -> None:
        self._auditor = auditor
        self._clock = auditor.clock
        self._started = self._clock.monotonic()
        self._timestamp = self._clock.now()
        name = params.get("name") if params is not None else None
        arguments = params.get("arguments") if params is not None else None
        session = identity or resolve_session(
            auditor.identity, headers, params, transport_session_id=transport_session_id
        )
        self.tool_name: str = name if isinstance(name, str) and name else NAMELESS_TOOL
        self._fields: dict[str, Any] = {
            "tool_input": arguments if isinstance(arguments, dict) else {},
            "session_id": session.session_id,
            "session_source": session.source,
            "protocol_version": headers.get("mcp-protocol-version"),
            "metadata": {"request_id": request_id} if request_id is not None else None,
        }
        self.record_id = new_uuid()
        """The id the call's record will have (known now, so limit ledgers can point at it)."""
        self._forward_at: float | None = None
        self._answer: tuple[dict[str, Any] | None, UpstreamError | None, float] | None = None
        self._status: int | None = None
        self._streaming = False
        self._recorded = False
        self._commit: asyncio.Future[bool] | None = None
        self.config_sha256: str | None = None
        """The hash of the config snapshot that governed the call (set by the gateway when it takes
        the snapshot); ``None`` takes the auditor's hash in force when the record is written."""

    def decide(
        self,
        *,
        policy_decision: str | None = None,
        block_reason: str | None = None,
        matched_rule: str | None = None,
        matched_rule_index: int | None = None,
        evidence_chain: dict[str, Any] | None = None,
        approval_status: str | None = None,
        approved_by: str | None = None,
        approval_wait_ms: float | None = None,
        flagged_destructive: bool | None = None,
        dry_run: bool | None = None,
        session_id: str | None = None,
        session_source: SessionSource | None = None,
        agent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        tool_input: dict[str, Any] | None = None,
    ) -> None:
        """Record what governance decided; only the arguments given change anything
        (``tool_input``: the arguments as forwarded, when the proxy changed them: redaction)."""
        given = dict(locals())
        del given["self"]
        if metadata is not None:
            given["metadata"] = {**(self._fields.get("metadata") or {}), **metadata}
        self._fields.update({key: value for key, value in given.items() if value is not None})

    def block(self, **decision: Any) -> None:
        """The proxy answers the call itself (blocked, dry run, invalid): record it now."""
        self.decide(**decision)
        self._record()

    def reject(self, reason: str) -> None:
        """A call that is not a usable ``tools/call`` (``rejected`` with ``reason``)."""
        self.block(policy_decision="rejected", block_reason=reason)

    def forwarding(self) -> Observer:
        """Mark the forward's start; return the observer for the upstream's answer."""
        self._forward_at = self._clock.monotonic()
        return self._observe

    async def settle(self, status: int, *, wait: bool = True) -> None:
        """The reply (HTTP ``status``) is ready: record the call; in strict mode, wait for the commit
        (unless ``wait`` is false: a refusal because the store is failing does not wait on it)."""
        self._status = status
        self._record()
        if wait:
            await self._wait()

    def hold(self, messages: AsyncIterator[Any], status: int) -> AsyncIterator[Any]:
        """Relay a streamed reply, holding back the message that answers the call until its record
        commits."""
        self._status = status
        self._streaming = True
        return self._held(messages)

    # -- internals ---------------------------------------------------------------------------

    def _observe(self, payload: dict[str, Any] | None, error: UpstreamError | None) -> None:
        if self._answer is not None:
            return
        self._answer = (payload, error, self._clock.monotonic())
        if self._streaming:
            self._record()

    async def _held(self, messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for message in messages:
                if self._commit is not None and not self._commit.done():
                    await self._wait()  # this message is the answer just observed
                yield message
        finally:
            aclose = getattr(messages, "aclose", None)
            if aclose is not None:
                await aclose()
            self._record()

    async def _wait(self) -> None:
        commit = self._commit
        if commit is None or commit.done():
            return
        try:
            async with asyncio.timeout(self._auditor.strict_wait):
                await asyncio.shield(commit)
        except TimeoutError:
            log.warning(
                "audit record of a %s call not committed within %ss; answering anyway",
                self.tool_name,
                self._auditor.strict_wait,
            )

    def _record(self) -> None:
        if self._recorded:
            return
        self._recorded = True
        try:
            record = self._build()
        except Exception:
            log.exception("audit record of a %s call could not be built", self.tool_name)
            return
        self._commit = self._auditor.submit(record)

    def _build(self) -> ToolCallRecord:
        fields = dict(self._fields)
        ended = self._clock.monotonic()
        upstream_ms: float | None = None
        if self._answer is not None:
            payload, error, answered_at = self._answer
            ended = answered_at
            upstream_ms = (answered_at - (self._forward_at or answered_at)) * 1000
            fields["upstream_response"] = payload
            fields["success"] = error is None and call_succeeded(payload)
            if error is not None:
                fields["upstream_error"] = {
                    "failure_class": error.failure_class,
                    "message": error.message,
                    **error.data,
                }
                status = error.data.get("upstream_http_status")
                fields["upstream_http_status"] = status if isinstance(status, int) else None
            else:
                fields["upstream_http_status"] = self._status
        elif self._forward_at is not None:
            fields["success"] = False
            fields["upstream_error"] = {
                "failure_class": "unanswered",
                "message": "the reply ended before the upstream's answer to the call was seen",
            }
        total_ms = (ended - self._started) * 1000
        waited = float(fields.get("approval_wait_ms") or 0.0)
        return ToolCallRecord(
            id=self.record_id,
            timestamp=self._timestamp,
            tool_name=self.tool_name,
            environment=self._auditor.environment,
            config_sha256=self.config_sha256
            if self.config_sha256 is not None
            else self._auditor.config_sha256,
            upstream_latency_ms=upstream_ms,
            total_duration_ms=total_ms,
            proxy_compute_ms=max(0.0, total_ms - (upstream_ms or 0.0) - waited),
            **fields,
        )
