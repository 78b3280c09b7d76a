"""Recording one ``tools/call``: what the pipeline learns along the way becomes one record.

The gateway opens a :class:`CallAudit` when a call arrives and ends it in exactly one of
three ways, each producing exactly one :class:`ToolCallRecord`:

* ``block(outcome)`` / ``reject(reason)``: the call is answered by the proxy and never forwarded;
* ``forwarding()`` → the observer the relay calls with the upstream's answer, then
  ``settle(status)`` for a JSON reply or ``hold(chunks, status)`` for an SSE reply;
* the stream closes before any answer was seen: the record says so.

What governance concluded arrives as one typed value, the call's
:class:`~helio_proxy.governance.CallOutcome` (``conclude(outcome)`` before forwarding,
``block(outcome)`` when the proxy answers): the decision, the block, the approval holds, the
limits checked, the shadow decision, the config hash. The few facts that are not governance's
(who called, through which upstream, what the data plane saw and changed) are typed calls too.
Nothing is merged as keyword dicts along the way: :meth:`CallAudit._build` maps the facts to the
record's fields once, when the record is written, in one fixed order.

In ``strict`` durability ``settle`` returns, and ``hold`` releases the event carrying the
response, only once the record is committed (bounded by ``strict_wait``). In ``batched``
durability (``Auditor(after_reply=True)``) ``settle`` leaves the record's building to a callback
that runs once the reply is written: nothing waits for the record, so neither does the agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final, Protocol

from helio_proxy.audit.clock import SYSTEM_CLOCK, Clock
from helio_proxy.audit.records import NAMELESS_TOOL, AnyRecord, ToolCallRecord, call_succeeded
from helio_proxy.config.sections import SessionConfig
from helio_proxy.dataplane.facts import DataPlaneFacts
from helio_proxy.errors import UpstreamError
from helio_proxy.governance import ApprovalFacts, CallOutcome, ChargeFacts, LimitFacts
from helio_proxy.ids import new_uuid
from helio_proxy.policy import Decision, Deny, DryRun
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
        after_reply: bool = False,
    ) -> None:
        self.writer = writer
        self.after_reply = after_reply
        """Build and submit a settled call's record once the loop has written the reply (nothing
        waits for it: ``batched`` durability) instead of before. See :meth:`CallAudit.settle`."""
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
        agent_id: str | None = None,
        upstream: str | None = None,
    ) -> CallAudit:
        """Start recording a call that has just arrived (``identity``: its session, when the caller
        has resolved it already; otherwise it is resolved here; ``agent_id``: the authenticated
        agent; ``upstream``: the upstream's name, recorded as ``metadata.upstream``)."""
        return CallAudit(
            self,
            params,
            request_id,
            headers,
            transport_session_id=transport_session_id,
            identity=identity,
            agent_id=agent_id,
            upstream=upstream,
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
        agent_id: str | None = None,
        upstream: str | None = None,
    ) -> None:
        self._auditor = auditor
        self._clock = auditor.clock
        self._started = self._clock.monotonic()
        self._timestamp = self._clock.now()
        name = params.get("name") if params is not None else None
        arguments = params.get("arguments") if params is not None else None
        self._session = identity or resolve_session(
            auditor.identity, headers, params, transport_session_id=transport_session_id
        )
        self.tool_name: str = name if isinstance(name, str) and name else NAMELESS_TOOL
        self._tool_input: dict[str, Any] = arguments if isinstance(arguments, dict) else {}
        self._request_id = request_id
        self._protocol_version = headers.get("mcp-protocol-version")
        self._agent_id = agent_id
        self._upstream = upstream
        self._outcome: CallOutcome | None = None
        self._rejected: str | None = None
        self._rejection: Mapping[str, Any] | None = None
        self._data_plane: DataPlaneFacts | None = None
        self._answer_check: DataPlaneFacts | None = None
        self._answer_block: str | None = None
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

    def conclude(self, outcome: CallOutcome) -> None:
        """What governance concluded about the call (the last conclusion given is recorded)."""
        self._outcome = outcome
        if outcome.config_sha256:
            self.config_sha256 = outcome.config_sha256

    def block(self, outcome: CallOutcome) -> None:
        """The proxy answers the call itself (blocked, dry run): record it now."""
        self.conclude(outcome)
        self._record()

    def reject(self, reason: str, *, metadata: Mapping[str, Any] | None = None) -> None:
        """A call that is not a usable ``tools/call``: record it now as ``rejected`` with
        ``reason`` (``metadata``: what the refusal adds to the record's ``metadata``)."""
        self._rejected = reason
        self._rejection = metadata
        self._record()

    def forwarded_arguments(self, arguments: dict[str, Any]) -> None:
        """The arguments as forwarded, when the proxy changed them (redaction)."""
        self._tool_input = arguments

    def data_plane(self, facts: DataPlaneFacts) -> None:
        """What the data plane found in the call before it was forwarded (``metadata.data_plane``)."""
        self._data_plane = facts

    def answer_checked(self, facts: DataPlaneFacts, reason: str | None) -> None:
        """What the data plane found in the upstream's answer (added to ``metadata.data_plane``:
        its findings after the arguments'), and the block reason when it withheld the answer."""
        self._answer_check = facts
        if reason is not None:
            self._answer_block = reason

    def forwarding(self) -> Observer:
        """Mark the forward's start; return the observer for the upstream's answer."""
        self._forward_at = self._clock.monotonic()
        return self._observe

    async def settle(self, status: int, *, wait: bool = True) -> None:
        """The reply (HTTP ``status``) is ready: record the call; in strict mode, wait for the commit
        (unless ``wait`` is false: a refusal because the store is failing does not wait on it)."""
        self._status = status
        if self._auditor.after_reply and not self._recorded:
            # The record's pydantic model, its row, the metrics and the hand-over to the writer:
            # tens of µs that the agent need not wait for. The gateway writes the reply in this
            # same step, and this callback runs after it (the loop runs callbacks in order).
            self._recorded = True
            asyncio.get_running_loop().call_soon(self._write)
            return
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
        self._write()

    def _write(self) -> None:
        try:
            record = self._build()
        except Exception:
            log.exception("audit record of a %s call could not be built", self.tool_name)
            return
        self._commit = self._auditor.submit(record)

    def _build(self) -> ToolCallRecord:
        fields: dict[str, Any] = {}
        metadata: dict[str, Any] | None = (
            {"request_id": self._request_id} if self._request_id is not None else None
        )
        if self._rejection is not None:
            metadata = {**(metadata or {}), **self._rejection}
        if self._upstream is not None:
            metadata = metadata or {}
            metadata["upstream"] = self._upstream
        data_plane, answer_check = self._data_plane, self._answer_check
        if data_plane is not None:
            merged = data_plane if answer_check is None else data_plane.with_answer(answer_check)
            metadata = metadata or {}
            metadata["data_plane"] = data_plane_metadata(merged)
        outcome = self._outcome
        if outcome is not None:
            metadata = _outcome_fields(outcome, fields, metadata)
        if self._rejected is not None:
            fields["policy_decision"] = "rejected"
            fields["block_reason"] = self._rejected
        if answer_check is not None and data_plane is None:
            # Only the answer's check had something to say: after the outcome's keys.
            metadata = metadata or {}
            metadata["data_plane"] = data_plane_metadata(answer_check)
        if self._answer_block is not None:
            fields["block_reason"] = self._answer_block
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
        session = self._session
        fields["id"] = self.record_id
        fields["timestamp"] = self._timestamp
        fields["tool_name"] = self.tool_name
        fields["tool_input"] = self._tool_input
        fields["session_id"] = session.session_id
        fields["session_source"] = session.source
        fields["agent_id"] = self._agent_id
        fields["protocol_version"] = self._protocol_version
        fields["metadata"] = metadata
        fields["environment"] = self._auditor.environment
        fields["config_sha256"] = (
            self.config_sha256 if self.config_sha256 is not None else self._auditor.config_sha256
        )
        fields["upstream_latency_ms"] = upstream_ms
        fields["total_duration_ms"] = total_ms
        fields["proxy_compute_ms"] = max(0.0, total_ms - (upstream_ms or 0.0) - waited)
        # Built unvalidated (the loop's time; see AuditRecord.trusted): every record built here in
        # the test suite is also validated and compared (tests/conftest.py).
        return ToolCallRecord.trusted(fields)


def _outcome_fields(
    outcome: CallOutcome, fields: dict[str, Any], metadata: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Put what governance concluded into ``fields``; return ``metadata`` with the shadow decision
    and the limits added (after what is already there, as the record has always ordered them)."""
    recorded = outcome.recorded
    if isinstance(recorded, DryRun):
        _decision_fields(recorded.would, None, fields)
        fields["policy_decision"] = recorded.policy_decision
        fields["dry_run"] = True
    else:
        _decision_fields(recorded, outcome.told, fields)
    if outcome.block_reason is not None:
        fields["block_reason"] = outcome.block_reason
    if outcome.approvals:
        _approval_fields(outcome.approvals, fields)
    shadow = outcome.shadow
    if shadow is not None:
        metadata = metadata or {}
        metadata["shadow"] = {
            "decision": shadow.action,
            "rule": shadow.rule,
            "rule_index": shadow.rule_index,
            "reason": shadow.reason,
        }
    if outcome.limits is not None:
        metadata = metadata or {}
        metadata["limits"] = limits_metadata(outcome.limits)
    return metadata


def _decision_fields(decision: Decision, told: Mapping[str, Any] | None, fields: dict[str, Any]) -> None:
    """What a record says about a decision (``told``: the block ``data`` the agent got)."""
    fields["policy_decision"] = decision.blocked_action if isinstance(decision, Deny) else decision.action
    fields["matched_rule"] = decision.rule
    fields["matched_rule_index"] = decision.rule_index
    fields["flagged_destructive"] = decision.flagged_destructive
    gate = decision.gate
    if gate is not None:
        gate_fields = gate.audit_fields()
        if told is not None and not gate.passed:
            gate_fields["suggestion"] = told.get("suggestion", gate_fields.get("suggestion"))
        fields["evidence_chain"] = {"gate": gate_fields}
    if isinstance(decision, Deny):
        fields["block_reason"] = decision.reason
        if decision.drifted_aspects:
            fields["evidence_chain"] = {"tool_drift": {"drifted_aspects": list(decision.drifted_aspects)}}


def _approval_fields(approvals: tuple[ApprovalFacts, ...], fields: dict[str, Any]) -> None:
    """The approval holds, in order: the last one's status and wait, the last approvers named,
    and every ticket's ``evidence_chain`` blocks after the decision's (a later block of the same
    name replaces an earlier one)."""
    chain: dict[str, Any] | None = fields.get("evidence_chain")
    for facts in approvals:
        fields["approval_status"] = facts.status
        fields["approval_wait_ms"] = facts.wait_ms
        if facts.approved_by is not None:
            fields["approved_by"] = facts.approved_by
        if facts.chain is not None:
            chain = {**(chain or {}), **facts.chain}
    if chain is not None:
        fields["evidence_chain"] = chain


def data_plane_metadata(facts: DataPlaneFacts) -> dict[str, Any]:
    """``metadata.data_plane`` of a call's record."""
    out: dict[str, Any] = {}
    if facts.credential is not None:
        out["credential"] = facts.credential
    if facts.rule is not None:
        out["rule"] = facts.rule
    if facts.unknown_tool is not None:
        out["unknown_tool"] = {"mode": facts.unknown_tool}
    for key, schema in (("input_schema", facts.input_schema), ("output_schema", facts.output_schema)):
        if schema is not None:
            out[key] = {"mode": schema.mode, "errors": [error.as_dict() for error in schema.errors]}
    if facts.findings:
        out["findings"] = [finding.as_dict() for finding in facts.findings]
    return out


def limits_metadata(limits: LimitFacts) -> dict[str, Any]:
    """``metadata.limits`` of a call's record."""
    out: dict[str, Any] = {"charged": limits.charged, "charges": [_charge(c) for c in limits.charges]}
    if limits.invalid:
        out["invalid"] = [
            {"kind": i.kind, "name": i.name, "invalid_amount": i.code, "detail": i.detail}
            for i in limits.invalid
        ]
    if limits.session_unresolved is not None:
        kind, name = limits.session_unresolved
        out["session_unresolved"] = {"kind": kind, "name": name}
    return out


def _charge(charge: ChargeFacts) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "kind": charge.kind,
        "name": charge.name,
        "bucket": charge.bucket,
        "amount": charge.amount,
        "used_before": charge.used_before,
        "limit": charge.limit,
        "window": charge.window,
        "fits": charge.fits,
    }
    if charge.currency is not None:
        summary["currency"] = charge.currency
    if charge.epoch is not None:
        summary["epoch"] = charge.epoch
    return summary
