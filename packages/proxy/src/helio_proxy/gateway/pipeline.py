"""The gateway: one place every agent message passes through.

Only ``tools/call`` is governed; every other request, notification and response is relayed
unchanged. :meth:`Gateway.tools_call` is the seam where policy, evidence, approvals, limits and
audit plug in, in that order, around the forward. ``tools/list`` answers are observed on the
way back to keep tool baselines current (drift detection).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, cast

from helio_proxy.audit import Auditor, CallAudit
from helio_proxy.dataplane import DataPlane, ResultCheck
from helio_proxy.dataplane.replies import with_arguments, with_result
from helio_proxy.errors import UpstreamError
from helio_proxy.evidence import EvidenceService, to_ms
from helio_proxy.gateway.agreement import Mismatch, header_mismatch
from helio_proxy.gateway.call import InvalidToolCall, ToolCall
from helio_proxy.gateway.completion import CompletionRecorder
from helio_proxy.gateway.enforcement import (
    Enforcer,
    FailClosedEnforcer,
    GovernedCall,
    Settlement,
    commit_now,
    settle_reservations,
)
from helio_proxy.gateway.eras import pin_refusal
from helio_proxy.gateway.exchange import (
    ClientDisconnected,
    EmptyReply,
    Inbound,
    JsonReply,
    MessageStream,
    Reply,
    SingleAnswer,
    StreamReply,
    Upstream,
    UpstreamMessage,
    error_reply,
)
from helio_proxy.gateway.outcome import CallOutcome, OutcomeObserver, ShadowStats
from helio_proxy.gateway.relay import (
    ResponseObserver,
    relay_request,
    relay_single,
    send_and_read,
    upstream_failure,
    within,
)
from helio_proxy.gateway.render import block_reply, dry_run_reply
from helio_proxy.gateway.snapshot import Snapshots
from helio_proxy.jsonrpc import (
    DUPLICATE_KEY,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    POLICY_BLOCKED,
    EnvelopeError,
    Kind,
    RequestId,
)
from helio_proxy.policy import (
    UNRESOLVED_GATES,
    BaselineCache,
    CallFacts,
    DecisionContext,
    Deny,
    DryRun,
    RequireApproval,
    SnapshotGates,
)
from helio_proxy.policy.baselines import DriftEvent
from helio_proxy.policy.decision import Decision
from helio_proxy.session.binding import SessionOwners
from helio_proxy.session.identity import UNRESOLVED, SessionIdentity, SessionResolver

log = logging.getLogger("helio_proxy.gateway")

SESSION_AGENT_MISMATCH: Final = "session_agent_mismatch"
"""Block reason: an authenticated agent called with a session id another agent holds."""


class CallTracing(Protocol):
    """Traces of governed calls (:class:`helio_proxy.telemetry.tracing.Tracing`, when traces are on)."""

    async def server(self, inbound: Inbound, handle: Callable[[Inbound], Awaitable[Reply]]) -> Reply: ...

    def decide(self, decide: Callable[[], Decision]) -> Decision: ...


class KillCheck(Protocol):
    """The kill switch as the gateway sees it (:class:`helio_proxy.killswitch.KillSwitch`)."""

    def check(self, upstream: str | None, agent: str | None) -> Deny | None: ...

    def engaged_for(self, upstream: str | None, agent: str | None) -> asyncio.Future[Deny]: ...


KILL_SWITCH: Final = "kill_switch"


class Gateway:
    """Routes agent messages to the upstream, governing tool calls on the way."""

    def __init__(
        self,
        upstream: Upstream,
        snapshots: Snapshots | None = None,
        *,
        auditor: Auditor | None = None,
        baselines: BaselineCache | None = None,
        enforcer: Enforcer | None = None,
        evidence: EvidenceService | None = None,
        upstream_name: str | None = None,
        protocol_pin: str = "auto",
        clock: Callable[[], float] = time.time,
        dataplane: DataPlane | None = None,
        tracing: CallTracing | None = None,
        request_timeout: float | None = None,
        connect_timeout: float = 0.0,
        kill_switch: KillCheck | None = None,
    ) -> None:
        self.upstream = upstream
        self.kill_switch = kill_switch
        """Checked first on every ``tools/call`` (in memory); ``None``: no kill switch (tests)."""
        self.request_timeout = request_timeout
        """``upstream.request_timeout``: a request's whole answer must arrive within it of the send
        (``None``: only the transport's own timeouts, relay-only tests)."""
        self.connect_timeout = connect_timeout
        """``upstream.connect_timeout``: added for ``initialize``, which may have to start the upstream."""
        self.tracing = tracing
        """Spans for governed calls; ``None`` (traces off) costs one check per call."""
        self.dataplane = dataplane
        """Schema checks, unknown tools, content scanning (``None``: none of them, relay-only tests)."""
        self.auditor = auditor or Auditor(None)
        """Turns each governed call into one audit record (a no-op auditor without a store)."""
        self.snapshots = snapshots
        """The current config snapshot; ``None`` relays tool calls ungoverned (relay-only tests)."""
        self.evidence = evidence
        """Session evidence and call history; ``None`` treats every session as empty (gates unmet)."""
        self.clock = clock
        self.resolver = SessionResolver(snapshots.current.config.session) if snapshots else None
        """Session identity (``session`` is restart-only, so the startup section is kept)."""
        self.baselines = baselines if baselines is not None else BaselineCache()
        self.enforcer: Enforcer = enforcer if enforcer is not None else FailClosedEnforcer()
        self.upstream_name = upstream_name
        self.protocol_pin = protocol_pin
        """``upstream.protocol_version``: ``auto`` relays either era; a date refuses the other era."""
        self.observers: list[OutcomeObserver] = []
        """Called with every governed call's :class:`CallOutcome` (the audit trail subscribes here)."""
        self.shadow = ShadowStats()
        self._streams_opening: dict[str, asyncio.Event] = {}
        """Sessions whose ``GET`` stream is being opened upstream (messages after it wait for it)."""
        self._held: dict[tuple[str, RequestId], asyncio.Future[Settlement]] = {}
        self._in_flight: set[tuple[str, RequestId]] = set()
        """Requests forwarded and not yet answered, by client session and request id."""
        """Calls waiting in enforcement (an approval hold), by client session and request id."""
        self.drift_observers: list[Callable[[DriftEvent], None]] = []
        """Called with each :class:`DriftEvent` seen in a ``tools/list`` answer."""
        self.session_owners: SessionOwners | None = None
        """Governance session id → the agent that first called with it (``listen.auth``; one table
        shared by every mount). ``None``: agents are not authenticated."""

    async def handle(self, inbound: Inbound) -> Reply:
        """One JSON-RPC message from an agent (any transport): governed if it is a ``tools/call``,
        relayed otherwise.

        A request whose id is still in flight in the same client session is refused
        (``duplicate_request_id``; the spec forbids reusing an id within a session): forwarded, it
        would leave the upstream's first handler without its answer (servers key answers by id).
        The id is free again once the first request's reply has been written (or dropped). Checked
        where the proxy itself knows the client's session (see :func:`_in_flight_key`).
        """
        key = _in_flight_key(inbound)
        if key is None:
            return await self._handle(inbound)
        if key in self._in_flight:
            return await self._duplicate_request(inbound)
        self._in_flight.add(key)
        try:
            reply = await self._handle(inbound)
        except BaseException:
            self._in_flight.discard(key)
            raise
        if isinstance(reply, StreamReply):
            return dataclasses.replace(reply, messages=_Releasing(reply.messages, self._in_flight, key))
        self._in_flight.discard(key)
        return reply

    async def _duplicate_request(self, inbound: Inbound) -> Reply:
        message = inbound.message
        refusal = EnvelopeError(
            f"request id {message.id!r} is already in flight in this session; use a new id",
            request_id=message.id,
            reason=DUPLICATE_REQUEST_ID,
            payload=message.payload,
        )
        return await self.refuse(
            refusal,
            inbound.headers,
            transport_session_id=inbound.transport_session_id,
            agent_id=inbound.agent_id,
        )

    async def _handle(self, inbound: Inbound) -> Reply:
        message = inbound.message
        mismatch = header_mismatch(message, inbound.headers)
        if mismatch is not None:
            return await self._reject_mismatch(inbound, mismatch)
        refused = pin_refusal(message, self.protocol_pin)
        if refused is not None:
            return refused
        if message.kind is not Kind.REQUEST:
            if message.method == "notifications/cancelled":
                self._cancel_held(inbound)
            return await self._forward_one_way(inbound)
        if message.method == "tools/call":
            return await self.tools_call(inbound)
        if message.method == "tools/list":
            return await self.forward(inbound, observe=self._observe_tools_list)
        return await self.forward(inbound)

    async def _reject_mismatch(self, inbound: Inbound, mismatch: Mismatch) -> Reply:
        """HTTP 400 / ``-32020``, and a ``rejected`` / ``header_mismatch`` audit record; nothing is forwarded."""
        message = inbound.message
        params = message.params
        if message.method != "tools/call":
            # Only a tool call's name and arguments belong in a tool_call record; keep the envelope
            # (it may carry the session id).
            params = {"_meta": params["_meta"]} if params is not None and "_meta" in params else None
        audit = self.auditor.begin(params, message.id, inbound.headers, agent_id=inbound.agent_id)
        audit.reject("header_mismatch", metadata={"method": message.method, "header": mismatch.header})
        reply = error_reply(
            message.id,
            HEADER_MISMATCH,
            f"Header mismatch: {mismatch.message}",
            {"reason": "header_mismatch", "header": mismatch.header},
            status=400,
        )
        return await _settled(audit, reply)

    async def _foreign_session(self, call: ToolCall, audit: CallAudit) -> Reply:
        """Another agent's session id: refused (``-32001``, ``session_agent_mismatch``) and recorded."""
        message = "this session belongs to another agent; use a session id of your own"
        data = {
            "blocked": True,
            "reason": SESSION_AGENT_MISMATCH,
            "retry_allowed": False,
            "suggestion": "start a new session (a new x-helio-session-id) for this agent",
        }
        audit.reject(SESSION_AGENT_MISMATCH)
        return await _settled(audit, error_reply(call.request_id, POLICY_BLOCKED, message, data))

    async def refuse(
        self,
        error: EnvelopeError,
        headers: Mapping[str, str],
        *,
        transport_session_id: str | None = None,
        agent_id: str | None = None,
    ) -> JsonReply:
        """An ingress refusal: HTTP 400 with the JSON-RPC error; nothing is forwarded.

        A refusal with a ``reason`` (a duplicate key, a ``tools/call`` notification) is also
        recorded: a ``tool_call`` record with ``policy_decision: rejected`` and that reason.
        """
        data = {"reason": error.reason, **(error.detail or {})} if error.reason else None
        reply = error_reply(error.request_id, error.code, str(error), data, status=400)
        if error.reason is None:
            return reply
        payload = error.payload or {}
        raw_params = payload.get("params")
        params = cast(dict[str, Any], raw_params) if isinstance(raw_params, dict) else None
        if params is not None and (payload.get("method") != "tools/call" or error.reason == DUPLICATE_KEY):
            # A duplicated object holds only its last value, which the upstream might read
            # otherwise: record no arguments. Other methods keep only the envelope.
            kept = ("name", "_meta") if payload.get("method") == "tools/call" else ("_meta",)
            params = {key: params[key] for key in kept if key in params} or None
        audit = self.auditor.begin(
            params,
            error.request_id,
            headers,
            transport_session_id=transport_session_id,
            agent_id=agent_id,
            upstream=self.upstream_name,
        )
        audit.reject(error.reason, metadata={**(error.detail or {})})
        await _settled(audit, reply)
        return reply

    async def tools_call(self, inbound: Inbound) -> Reply:
        """The governed path for one ``tools/call``."""
        if self.tracing is not None:
            return await self.tracing.server(inbound, self._tools_call)
        return await self._tools_call(inbound)

    async def _tools_call(self, inbound: Inbound) -> Reply:
        params = inbound.message.params or {}
        # Session identity is resolved once, here, for the record and for governance alike.
        identity = (
            self.resolver.resolve(inbound.headers, params, transport_session_id=inbound.transport_session_id)
            if self.resolver
            else None
        )
        audit = self.auditor.begin(
            inbound.message.params,
            inbound.message.id,
            inbound.headers,
            transport_session_id=inbound.transport_session_id,
            identity=identity,
            agent_id=inbound.agent_id,
            upstream=self.upstream_name,
        )
        try:
            call = ToolCall.from_inbound(inbound)
        except InvalidToolCall as exc:
            audit.reject(exc.reason)
            return await _settled(
                audit, error_reply(inbound.message.id, INVALID_PARAMS, str(exc), {"reason": exc.reason})
            )
        if self.kill_switch is not None:
            killed = self.kill_switch.check(self.upstream_name, inbound.agent_id)
            if killed is not None:
                if self.snapshots is not None:
                    audit.config_sha256 = self.snapshots.current.sha256
                return await self._killed(call, audit, killed)
        if self.auditor.refusal() is not None:
            # strict durability and a store that cannot be written: nothing is forwarded unrecorded
            denied = Deny(reason=AUDIT_UNAVAILABLE, retry_allowed=True)
            reply = block_reply(call, denied)
            audit.block(CallOutcome(call.name, denied, denied, told=reply.payload["error"]["data"]))
            # Its record is submitted (a commit clears the failure), but not waited for.
            await audit.settle(reply.status, wait=False)
            return reply
        if self.snapshots is None:
            return await _settled(audit, await self.forward(call.inbound, observe=audit.forwarding()))
        snapshot = self.snapshots.current
        audit.config_sha256 = snapshot.sha256  # the record names the config that governed the call
        identity = identity or UNRESOLVED
        if (
            inbound.agent_id is not None
            and identity.session_id is not None
            and self.session_owners is not None
        ):
            owner = self.session_owners.claim(identity.session_id, inbound.agent_id)
            if owner is not None:
                return await self._foreign_session(call, audit)
        facts = CallFacts(
            tool=call.name,
            arguments=call.arguments if params.get("arguments") is not None else None,
            upstream=self.upstream_name,
            session_id=identity.session_id,
            agent=inbound.agent_id,
        )
        data_plane_rule: int | None = None
        if self.dataplane is not None:
            if snapshot.policy.has_data_plane_rules:
                # The matched rule's data_plane modes; matching is pure, so it needs no decision yet.
                data_plane_rule = snapshot.policy.data_plane_rule(
                    facts, self.baselines.facts(call.name).hints
                )
            checked = self.dataplane.check_call_now(
                snapshot.config, call.name, call.arguments, data_plane_rule
            )
            if checked is None:  # the upstream's tool list may need fetching first
                checked = await self.dataplane.check_call(
                    snapshot.config, call.name, call.arguments, data_plane_rule
                )
            if checked.facts is not None:
                audit.data_plane(checked.facts)
            if checked.deny is not None:
                blocked = CallOutcome(call.name, checked.deny, checked.deny, None, snapshot.loaded.sha256)
                self._record(blocked)
                reply = block_reply(call, checked.deny)
                audit.block(dataclasses.replace(blocked, told=reply.payload["error"]["data"]))
                return await _settled(audit, reply)
            if checked.arguments is not None:
                call = dataclasses.replace(
                    call,
                    arguments=checked.arguments,
                    inbound=dataclasses.replace(
                        call.inbound, message=with_arguments(call.inbound.message, checked.arguments)
                    ),
                )
                facts = dataclasses.replace(facts, arguments=checked.arguments)
                audit.forwarded_arguments(checked.arguments)
        gates = await self._session_gates(identity)
        context = DecisionContext(tool=self.baselines.facts(call.name), gates=gates)
        if self.tracing is None:
            decision = snapshot.policy.decide(facts, context)
        else:
            decision = self.tracing.decide(lambda: snapshot.policy.decide(facts, context))
        shadow = snapshot.policy.decide_shadow(facts, context)
        if isinstance(decision, DryRun):
            enforced = self.enforcer.peek(
                decision, _governed(call, facts, identity, snapshot.sha256, audit)
            ).decision
            simulated = CallOutcome(call.name, decision, decision, shadow, snapshot.sha256)
            self._record(simulated)
            audit.block(simulated)
            return await _settled(audit, dry_run_reply(call, decision, enforced))
        if isinstance(decision, RequireApproval) or snapshot.budgets_hold:
            governed = _governed(call, facts, identity, snapshot.sha256, audit)
            held = await self._hold(inbound, decision, governed, audit, shadow)
            if isinstance(held, Deny):
                released = CallOutcome(call.name, decision, held, shadow, snapshot.sha256)
                self._record(released)
                audit.block(released)
                return await _settled(audit, block_reply(call, held))
            settlement = held
        else:
            # Nothing can hold this call: no task, no cancellation bookkeeping, no watcher. And
            # most calls (an Allow no limit or budget applies to) await no gate at all.
            settlement = self.enforcer.settled(decision)
            if settlement is None:
                governed = _governed(call, facts, identity, snapshot.sha256, audit)
                settlement = await self.enforcer.settle(decision, governed)
        settled = settlement.decision
        if self.kill_switch is not None and not isinstance(settled, Deny):
            # Engaged while the call was being settled (limits, an approval just given): not forwarded.
            late = self.kill_switch.check(self.upstream_name, inbound.agent_id)
            if late is not None:
                await settlement.undelivered()
                settlement = Settlement(late, approvals=settlement.approvals, limits=settlement.limits)
                settled = late
        outcome = CallOutcome(
            call.name,
            decision,
            settled,
            shadow,
            snapshot.sha256,
            approvals=settlement.approvals,
            limits=settlement.limits,
        )
        self._record(outcome)
        if isinstance(settled, Deny):
            await settlement.undelivered()
            reply = block_reply(call, settled)
            audit.block(dataclasses.replace(outcome, told=reply.payload["error"]["data"]))
            return await _settled(audit, reply)
        if self.auditor.refuses_calls:
            # Strict durability and the audit store is down: this call's record could not be kept.
            refused = audit_unavailable(decision)
            await settlement.undelivered()
            reply = block_reply(call, refused)
            audit.block(dataclasses.replace(outcome, enforced=refused, told=reply.payload["error"]["data"]))
            return await _settled(audit, reply)
        audit.conclude(outcome)
        recorder: CompletionRecorder | None = None
        observe = audit.forwarding()
        if settlement.reservations:
            observe = _both(observe, _charging(settlement))
        result_check = self._result_check(snapshot.config, call.name, audit, data_plane_rule)
        if result_check is not None:
            # First: what the audit, limits and evidence see of the answer is what the agent gets.
            observe = _both(result_check.observe, observe)
        if self.evidence is not None:
            index = decision.rule_index
            rule = snapshot.config.policies.rules[index] if index is not None and decision.rule else None
            # The call id is its audit record's id: one id to look the call up by, made once.
            recorder = CompletionRecorder(
                self.evidence, call.name, rule, identity, facts.arguments, audit.record_id.hex
            )
            observe = _both(observe, recorder.observe)
        try:
            reply = await self.forward(call.inbound, observe=observe)
        finally:
            # Whatever the observer has not settled (an exception, a cancelled forward) is charged:
            # the upstream may have run the call.
            if settlement.reservations:
                await settlement.delivered()
        if result_check is not None:
            reply = with_result(reply, result_check)
        if recorder is not None:
            if isinstance(reply, StreamReply):
                reply = StreamReply(reply.status, recorder.relay(reply.messages), reply.headers)
            else:
                await recorder.flush()
                reply = recorder.stamp(reply)  # the call id in result._meta (io.gethelio/call-id)
        return await _settled(audit, reply)

    async def _hold(
        self,
        inbound: Inbound,
        decision: Decision,
        governed: GovernedCall,
        audit: CallAudit,
        shadow: Decision | None,
    ) -> Settlement | Deny:
        """Settle a call that may wait for operators (approval), cancellable while it waits.

        ``notifications/cancelled`` for it, from the same client session, answers it with a
        ``request_cancelled`` block (returned as a ``Deny``); the client going away (the
        transport's ``disconnected``) records it as ``client_disconnected`` and raises
        :class:`ClientDisconnected`.
        """
        key = _held_key(inbound)
        settling = asyncio.ensure_future(self.enforcer.settle(decision, governed))
        if key is not None:
            self._held[key] = settling
        watch = asyncio.ensure_future(inbound.disconnected()) if inbound.disconnected is not None else None
        killed = (
            self.kill_switch.engaged_for(self.upstream_name, governed.agent_id)
            if self.kill_switch is not None
            else None
        )
        try:
            waits: set[asyncio.Future[Any]] = {settling}
            if watch is not None:
                waits.add(watch)
            if killed is not None:
                waits.add(killed)
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if killed is not None and killed.done() and not settling.done():
                # The kill switch releases the held call: its ticket is closed (kill_switch).
                settling.cancel(msg=KILL_SWITCH)
                with contextlib.suppress(asyncio.CancelledError):
                    await settling
                return killed.result()
        except asyncio.CancelledError:
            settling.cancel()
            # The request itself was cancelled (shutdown, the client's task) while held: it is still recorded.
            audit.block(_disconnected(governed, decision, shadow))
            raise
        finally:
            if watch is not None and not watch.done():
                watch.cancel()
            if killed is not None and not killed.done():
                killed.cancel()
            if key is not None and self._held.get(key) is settling:
                del self._held[key]
        if not settling.done():
            settling.cancel()
            audit.block(_disconnected(governed, decision, shadow))
            raise ClientDisconnected
        if settling.cancelled():
            # The agent cancelled this request (notifications/cancelled) while it was held.
            return _cancelled(decision)
        return settling.result()

    async def _killed(self, call: ToolCall, audit: CallAudit, killed: Deny) -> Reply:
        """The kill switch's block, before anything else is decided; recorded like any block."""
        outcome = CallOutcome(call.name, killed, killed, None, audit.config_sha256 or "")
        self._record(outcome)
        reply = block_reply(call, killed)
        audit.block(dataclasses.replace(outcome, told=reply.payload["error"]["data"]))
        return await _settled(audit, reply)

    def _result_check(self, config: Any, tool: str, audit: CallAudit, rule: int | None) -> ResultCheck | None:
        """The data plane's after-answer check of a forwarded call, recording into ``audit``."""
        if self.dataplane is None:
            return None
        return self.dataplane.result_check(config, tool, audit.answer_checked, rule)

    def _cancel_held(self, inbound: Inbound) -> None:
        """``notifications/cancelled`` for a call still held (approval, limits): stop holding it.

        Only a request of the same client session can be cancelled (the transport's session id,
        which the proxy or the upstream minted), so no client can cancel another's calls. The
        notification is relayed upstream as well, for a call that was already forwarded.
        """
        params = inbound.message.params or {}
        request_id = params.get("requestId")
        if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
            return
        scope = _session_scope(inbound)
        held = self._held.get((scope, request_id)) if scope is not None else None
        if held is not None and not held.done():
            log.info("held tools/call %r cancelled by the client", request_id)
            held.cancel(msg=REQUEST_CANCELLED)

    async def _session_gates(self, identity: SessionIdentity) -> SnapshotGates | None:
        """The call's gate check over its session state (``None`` without an evidence store)."""
        if self.evidence is None:
            return None
        if not identity.session_id:
            return UNRESOLVED_GATES
        producers = self.evidence.index.get().producers
        try:
            state = await self.evidence.store.snapshot(identity.session_id, history=False)
        except Exception as exc:  # store-backed session state, database unreachable: fail closed
            cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning(
                "session %r: state could not be read (%s); blocking the call", identity.session_id, cause
            )
            return SnapshotGates(None, to_ms(self.clock()), producers, unavailable=True)
        return SnapshotGates(state, to_ms(self.clock()), producers)

    def _record(self, outcome: CallOutcome) -> None:
        self.shadow.record(outcome)
        for observer in self.observers:
            try:
                observer(outcome)
            except Exception:  # an observer (audit, metrics) must never fail a call
                log.exception("call outcome observer failed")

    def _observe_tools_list(self, payload: dict[str, Any] | None, error: UpstreamError | None) -> None:
        if payload is None:
            return
        result = payload.get("result")
        if not isinstance(result, dict):
            return
        tools = cast(dict[str, Any], result).get("tools")
        if isinstance(tools, list):
            self.note_drift(self.baselines.observe(cast(list[Any], tools)))
            if self.dataplane is not None:
                self.dataplane.inventory.observe(cast(list[Any], tools))

    def note_drift(self, events: list[DriftEvent]) -> None:
        """Report drift state changes: a log line each, then every drift observer (the audit trail)."""
        for event in events:
            if event.kind == "tool_drift":
                log.warning("Tool definition drift: %s (%s)", event.tool, ", ".join(event.aspects))
            elif event.kind == "tool_drift_accepted":
                log.warning(
                    "Tool definition drift accepted: %s (by %s)", event.tool, event.accepted_by or "unknown"
                )
            else:
                log.warning("Tool definition drift reverted: %s", event.tool)
            for observer in self.drift_observers:
                try:
                    observer(event)
                except Exception:  # an observer (audit, metrics) must never fail a tools/list
                    log.exception("drift observer failed")

    def accept_tool(self, name: str, *, accepted_by: str | None = None) -> None:
        """Operator acceptance of a drifted tool's new definition (``KeyError`` if unknown).

        The baseline store persists it (a durable store: for every proxy on the store, and across
        restarts); a drifted tool's acceptance is reported as a ``tool_drift_accepted`` event.
        """
        drifted = self.baselines.facts(name).drifted
        accepted = self.baselines.accept(name, accepted_by=accepted_by)
        if drifted:
            sha = accepted.fingerprint
            self.note_drift([DriftEvent("tool_drift_accepted", name, (), sha, sha, accepted_by)])

    async def forward(self, inbound: Inbound, observe: ResponseObserver | None = None) -> Reply:
        """Send a request upstream and relay its answer (the response, or a stream) to the agent."""
        request_id = inbound.message.id
        assert request_id is not None
        headers = inbound.upstream_headers()
        await self._after_stream_opens(headers)
        deadline: float | None = None
        if self.request_timeout is not None:
            allowed = self.request_timeout
            if inbound.message.method == "initialize":
                allowed += self.connect_timeout
            deadline = asyncio.get_running_loop().time() + allowed
        try:
            # One deadline scope over the send and, for a single answer, its read.
            answer, message = await within(
                deadline, send_and_read(self.upstream.send(inbound.message, headers))
            )
        except UpstreamError as exc:
            if observe:
                observe(None, exc)
            return upstream_failure(request_id, exc)
        if message is not None:
            assert isinstance(answer, SingleAnswer)
            return relay_single(answer, message, request_id, observe)
        return await relay_request(
            answer, request_id, accepts_sse=inbound.accepts_sse, observe=observe, deadline=deadline
        )

    async def _forward_one_way(self, inbound: Inbound) -> Reply:
        """Notifications and client responses: 202 once the upstream has taken them."""
        headers = inbound.upstream_headers()
        await self._after_stream_opens(headers)
        try:
            answer = await self.upstream.notify(inbound.message, headers)
        except UpstreamError as exc:
            return upstream_failure(None, exc)
        if answer.status < 300:
            return EmptyReply(202, answer.headers)
        return JsonReply(answer.status, answer.body, answer.headers, answer.payload)

    async def _after_stream_opens(self, headers: Mapping[str, str]) -> None:
        """Keep the client's order: a session's ``GET`` stream that reached the proxy before this
        message is open upstream before the message is sent (bounded by :data:`STREAM_ORDER_WAIT`).

        A server may send a request's elicitation or sampling on the ``GET`` stream, and drop it
        when no stream is open; without this, a ``GET`` that needs a fresh upstream connection could
        be overtaken by a ``POST`` that reuses a pooled one.
        """
        session = headers.get("mcp-session-id")
        opening = self._streams_opening.get(session) if session else None
        if opening is not None and not opening.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STREAM_ORDER_WAIT):
                    await opening.wait()

    async def listen(self, headers: dict[str, str]) -> Reply:
        """The server-to-client stream of the client's session (``GET /mcp``), every message
        relayed unchanged."""
        session = headers.get("mcp-session-id")
        opening = asyncio.Event()
        if session:
            self._streams_opening[session] = opening
        try:
            answer = await self.upstream.listen(headers)
        except UpstreamError as exc:
            return upstream_failure(None, exc, status=502)
        finally:
            opening.set()
            if session and self._streams_opening.get(session) is opening:
                del self._streams_opening[session]
        if isinstance(answer, MessageStream):
            return StreamReply(200, aiter(answer), answer.headers)
        if answer.status >= 500:
            return _upstream_http_error("GET", answer.status)
        return JsonReply(answer.status, answer.body, answer.headers, answer.payload)

    async def end_session(self, headers: dict[str, str]) -> Reply:
        """End the client's session upstream (``DELETE /mcp``)."""
        try:
            answer = await self.upstream.end_session(headers)
        except UpstreamError as exc:
            return upstream_failure(None, exc, status=502)
        if answer.status >= 500:
            return _upstream_http_error("DELETE", answer.status)
        if not answer.body:
            return EmptyReply(answer.status, answer.headers)
        return JsonReply(answer.status, answer.body, answer.headers, answer.payload)


def _upstream_http_error(verb: str, status: int) -> JsonReply:
    """The upstream failed a ``GET``/``DELETE /mcp`` with a server error: a ``502`` whose JSON-RPC
    error says so (its own body, often not JSON, is not relayed)."""
    error = UpstreamError(
        f"the upstream answered HTTP {status} to {verb} /mcp",
        failure_reason="upstream_http_error",
        upstream_http_status=status,
    )
    return upstream_failure(None, error, status=502)


async def _settled(audit: CallAudit, reply: Reply) -> Reply:
    """Record the call once its reply is known; in strict durability, only answer once it is stored."""
    if isinstance(reply, StreamReply):
        return dataclasses.replace(reply, messages=audit.hold(reply.messages, reply.status))
    await audit.settle(reply.status)
    return reply


REQUEST_CANCELLED: Final = "request_cancelled"

DUPLICATE_REQUEST_ID: Final = "duplicate_request_id"
"""Refusal reason: the request reuses the id of one still in flight in the same client session."""


class _Releasing:
    """A stream reply's messages that free the request's id in its session once the stream ends,
    is closed, or is dropped without being read (then when it is collected)."""

    __slots__ = ("__weakref__", "_messages", "_release")

    def __init__(
        self,
        messages: AsyncIterator[UpstreamMessage],
        in_flight: set[tuple[str, RequestId]],
        key: tuple[str, RequestId],
    ) -> None:
        self._messages = messages
        self._release = weakref.finalize(self, in_flight.discard, key)

    def __aiter__(self) -> _Releasing:
        return self

    async def __anext__(self) -> UpstreamMessage:
        try:
            return await anext(self._messages)
        except BaseException:
            self._release()
            raise

    async def aclose(self) -> None:
        self._release()
        aclose = getattr(self._messages, "aclose", None)
        if aclose is not None:
            await aclose()


AUDIT_UNAVAILABLE: Final = "audit_unavailable"
"""Block reason while ``audit.durability: strict`` and the store cannot be written."""

STREAM_ORDER_WAIT: Final = 2.0
"""Longest a session's message waits for that session's ``GET`` stream to open upstream (seconds)."""


def _session_scope(inbound: Inbound) -> str | None:
    """The client session a message belongs to, when the transport has one."""
    return inbound.transport_session_id or inbound.headers.get("mcp-session-id") or None


def _held_key(inbound: Inbound) -> tuple[str, RequestId] | None:
    scope = _session_scope(inbound)
    request_id = inbound.message.id
    return (scope, request_id) if scope is not None and request_id is not None else None


def _in_flight_key(inbound: Inbound) -> tuple[str, RequestId] | None:
    """The client session and id a request is tracked under while in flight, where the proxy knows
    the session itself: legacy SSE (the session it minted) and stdio (``helio wrap``: one client).
    Over streamable HTTP the session id is the upstream's, which an upstream may hand to several
    clients (one constant id, say), so reused ids are left to the upstream there."""
    message = inbound.message
    if message.kind is not Kind.REQUEST or message.id is None:
        return None
    scope = inbound.transport_session_id
    if scope is None and inbound.network == "pipe":
        scope = inbound.headers.get("mcp-session-id") or "stdio"
    return (scope, message.id) if scope is not None else None


def _cancelled(decision: Decision) -> Deny:
    """The block a cancelled held call is answered with (the client has stopped waiting for it)."""
    return Deny(
        rule=decision.rule,
        rule_index=decision.rule_index,
        reason=REQUEST_CANCELLED,
        blocked_action=decision.action,
        retry_allowed=True,
    )


def _governed(
    call: ToolCall, facts: CallFacts, identity: SessionIdentity, config_sha256: str, audit: CallAudit
) -> GovernedCall:
    """The call as enforcement's gates see it (made only for a call that meets one)."""
    return GovernedCall(
        facts=facts,
        identity=identity,
        request_id=call.request_id,
        raw=call.inbound.message.raw,
        config_sha256=config_sha256,
        agent_id=call.inbound.agent_id,
        audit_id=audit.record_id,
    )


def _charging(settlement: Settlement) -> ResponseObserver:
    """Settle the call's limit reservations when the upstream's answer (or failure) is known.

    A call the upstream never received (connection refused) is refunded; anything else, including
    a timeout or a broken answer, may have run upstream and stays charged.
    """

    def observe(payload: dict[str, Any] | None, error: UpstreamError | None) -> None:
        taken = settlement.take()
        delivered = error is None or error.delivered
        if delivered and taken:
            taken = commit_now(taken)  # a ledger's charges only publish their events: no task
        if not taken:
            return
        task = asyncio.get_running_loop().create_task(settle_reservations(taken, delivered=delivered))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    return observe


_pending: set[asyncio.Task[None]] = set()
"""Reservation settlements in flight (kept referenced until done)."""


def _both(first: ResponseObserver, second: ResponseObserver) -> ResponseObserver:
    def observe(payload: dict[str, Any] | None, error: UpstreamError | None) -> None:
        first(payload, error)
        second(payload, error)

    return observe


def audit_unavailable(decision: Decision) -> Deny:
    """The block of a call that ``strict`` audit durability cannot record right now."""
    return Deny(
        reason="audit_unavailable",
        rule=decision.rule,
        rule_index=decision.rule_index,
        blocked_action=decision.action,
        retry_allowed=True,
        flagged_destructive=decision.flagged_destructive,
        drifted_aspects=decision.drifted_aspects,
    )


def _disconnected(governed: GovernedCall, decision: Decision, shadow: Decision | None) -> CallOutcome:
    """The outcome of a held call whose client went away (or whose request was cancelled) before
    it was settled: recorded under its policy decision, with the reason ``client_disconnected``."""
    return CallOutcome(
        governed.facts.tool,
        decision,
        decision,
        shadow,
        governed.config_sha256,
        block_reason="client_disconnected",
    )
