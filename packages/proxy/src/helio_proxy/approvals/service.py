"""The approval gate: durable tickets, held requests, operators' decisions.

:meth:`ApprovalService.hold` is the :class:`~helio_proxy.gateway.enforcement.ApprovalGate` the
enforcer calls for a ``RequireApproval``. It writes a ticket bound to the exact call (the stored
and displayed arguments are redacted like the audit's; the digest covers the originals), tells the
ticket's channel, and keeps the agent's request waiting until one of:

* operators resolve the ticket: through this proxy's REST API or Slack callback (woken at once)
  or another proxy's on the same database (seen by polling the held tickets every
  :data:`POLL_INTERVAL` seconds);
* the ticket expires (``approval_timeout``; ``default_on_timeout: allow`` lets rule tickets through);
* the agent disconnects (``client_disconnected``; the ticket is closed);
* the proxy shuts down (``shutdown_cancelled``; the ticket is *orphaned*, still open).

An orphaned ticket (also: one whose proxy died and stopped heartbeating) can still be decided;
once approved, the agent's identical retry (same session, upstream, tool, arguments digest and config)
before expiry is released once, and the ticket is ``consumed``. An identical retry while the
ticket is still undecided is held on that same ticket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
from pydantic import BaseModel

from helio_proxy.approvals.channels import ApprovalChannel, ChannelContext, build_channels
from helio_proxy.approvals.model import (
    RELEASABLE,
    CallKey,
    Ticket,
    TicketRequest,
    TicketStatus,
    Verdict,
    arguments_digest,
)
from helio_proxy.approvals.notices import Notices
from helio_proxy.approvals.settlement import APPROVAL_CAPACITY_EXHAUSTED, blocked, released
from helio_proxy.approvals.tickets import (
    adopt_orphan,
    claim_retry,
    consume,
    create_ticket,
    decide,
    heartbeat,
    list_tickets,
    load_ticket,
    mark_escalated,
    redact_requests,
    release_holder,
    sweep,
    ticket_statuses,
    transition,
)
from helio_proxy.audit import Auditor
from helio_proxy.audit.redact import Redactor
from helio_proxy.config import HelioConfig
from helio_proxy.config.policies import ApprovalRoute
from helio_proxy.governance import GovernedCall, Settlement
from helio_proxy.operator.events import EventBus
from helio_proxy.policy import Decision, RequireApproval
from helio_proxy.policy.drift import canonical_json
from helio_proxy.store import Store, parse_time_text, time_text

log = logging.getLogger("helio_proxy.approvals")

KILL_SWITCH: Final = "kill_switch"
"""The cancellation message of a held call the kill switch released (its ticket's resolution reason)."""
POLL_INTERVAL: Final = 0.5
"""Seconds between checks of the held tickets' status in the store (decisions made elsewhere)."""
HEARTBEAT_INTERVAL: Final = 5.0
"""Seconds between heartbeats on held tickets (and housekeeping sweeps)."""
ORPHAN_AFTER: Final = 30.0
"""Seconds without a heartbeat after which a held ticket's proxy is taken to be gone."""
SHUTDOWN_WAIT: Final = 5.0
"""Seconds :meth:`ApprovalService.shutdown` waits for held calls and notifications to finish."""


class _Shutdown:
    pass


_SHUTDOWN: Final = _Shutdown()
_Wake = Ticket | None | _Shutdown
"""What wakes a held call: the resolved ticket (decided here), ``None`` (look it up), or shutdown."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Hold:
    __slots__ = ("ticket", "wake")

    def __init__(self, ticket: Ticket) -> None:
        self.ticket = ticket
        self.wake: asyncio.Future[_Wake] = asyncio.get_running_loop().create_future()

    def notify(self, value: _Wake) -> None:
        if not self.wake.done():
            self.wake.set_result(value)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    return value


def _route(value: Any) -> ApprovalRoute | None:
    if isinstance(value, ApprovalRoute):
        return value
    if isinstance(value, Mapping):
        return ApprovalRoute.model_validate(value)
    return None


class ApprovalService:
    """Tickets in the store, held calls in memory, channels to tell humans."""

    def __init__(
        self,
        config: Callable[[], HelioConfig],
        store: Store,
        *,
        auditor: Auditor | None = None,
        events: EventBus | None = None,
        clock: Callable[[], datetime] = _utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
        delivery_backoff: float | None = None,
        poll_interval: float = POLL_INTERVAL,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        orphan_after: float = ORPHAN_AFTER,
    ) -> None:
        self.config = config
        """The config snapshot in force (``approval`` itself only changes on restart)."""
        self.store = store
        self.auditor = auditor
        self.events = events
        self.clock = clock
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.orphan_after = orphan_after
        self.instance = uuid.uuid4().hex
        """This proxy process, as the ``holder`` of the tickets whose calls it holds."""
        self._http = httpx.AsyncClient(transport=transport, follow_redirects=False)
        context = ChannelContext(self._http)
        if delivery_backoff is not None:
            context = ChannelContext(self._http, backoff=delivery_backoff)
        self.channels: dict[str, ApprovalChannel] = build_channels(config().approval, context)
        self._holds: dict[str, _Hold] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.notices = Notices(store, self.channels, self._spawn, events=events, auditor=auditor, clock=clock)
        self._poller: asyncio.Task[None] | None = None
        self._closing = False
        self._redactor: tuple[tuple[str, ...], Redactor] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Redact the arguments of stored tickets that still hold secrets, sweep once (tickets of
        proxies that are gone become orphaned) and start polling."""
        redacted = await self.store.write(redact_requests(self._redact))
        if redacted:
            log.warning("redacted secret arguments in %d stored approval ticket(s)", redacted)
        await self._sweep()
        self._poller = asyncio.create_task(self._poll(), name="helio-approvals-poller")

    async def shutdown(self) -> None:
        """Answer every held call with ``shutdown_cancelled`` (their tickets stay open, orphaned),
        then finish notifications; bounded by :data:`SHUTDOWN_WAIT`."""
        self._closing = True
        for hold in list(self._holds.values()):
            hold.notify(_SHUTDOWN)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_WAIT):
                while self._holds or self._tasks:
                    await asyncio.wait(list(self._tasks) or [asyncio.ensure_future(asyncio.sleep(0.01))])
        for task in [*self._tasks, *([self._poller] if self._poller else [])]:
            task.cancel()
        for task in [*self._tasks, *([self._poller] if self._poller else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._poller = None
        await self._http.aclose()

    @property
    def held(self) -> int:
        """Calls waiting for a decision in this process."""
        return len(self._holds)

    # -- the gate -----------------------------------------------------------------------------------

    async def hold(self, decision: RequireApproval, call: GovernedCall) -> Settlement:
        """Hold a ``RequireApproval`` call until its ticket is resolved (see the module docstring)."""
        approval = self.config().approval
        route = decision.route or ApprovalRoute()
        request = self._request(
            decision, call, route, kind_reason=decision.reason, on_timeout=approval.default_on_timeout
        )
        return await self._hold("rule", decision, call, request)

    async def hold_budget(
        self, decision: Decision, call: GovernedCall, breached: list[dict[str, Any]]
    ) -> Settlement:
        """Hold a call that would overspend a budget with ``on_exceed: require_approval``; routed by
        the first breached budget's ``approval`` block. Always fails closed on timeout."""
        route = (_route(breached[0].get("approval")) if breached else None) or ApprovalRoute()
        request = self._request(
            decision, call, route, kind_reason="budget", on_timeout="deny", breached=breached
        )
        return await self._hold("budget", decision, call, request)

    def _redact(self, arguments: dict[str, Any]) -> Any:
        """``arguments`` scrubbed as the audit scrubs a record (``audit.redact`` of the config in force)."""
        patterns = tuple(self.config().audit.redact)
        if self._redactor is None or self._redactor[0] != patterns:
            self._redactor = (patterns, Redactor(patterns))
        return self._redactor[1].scrub(arguments)

    def _request(
        self,
        decision: Decision,
        call: GovernedCall,
        route: ApprovalRoute,
        *,
        kind_reason: str,
        on_timeout: str,
        breached: list[dict[str, Any]] | None = None,
    ) -> TicketRequest:
        approval = self.config().approval
        timeout = (route.timeout or approval.timeout).seconds
        escalation = route.escalation_after.seconds if route.escalation_after else None
        return TicketRequest(
            tool_input_json=canonical_json(self._redact(dict(call.facts.arguments or {}))).decode(),
            matched_rule=decision.rule,
            rule_index=decision.rule_index,
            channel=route.channel,
            timeout_ms=timeout * 1000,
            quorum=route.quorum or approval.quorum,
            on_timeout=on_timeout,
            reason=kind_reason,
            escalation_after_ms=escalation * 1000
            if escalation is not None and escalation < timeout
            else None,
            delegates=tuple(route.delegates),
            drifted_aspects=tuple(decision.drifted_aspects),
            breached_budgets=tuple(_plain(b) for b in breached or []),
        )

    async def _hold(
        self, kind: str, decision: Decision, call: GovernedCall, request: TicketRequest
    ) -> Settlement:
        loop = asyncio.get_running_loop()
        if self._closing:
            return blocked(decision, None, "shutdown_cancelled", 0.0)
        started = loop.time()
        now = self.clock()
        digest = arguments_digest(call.facts.arguments)
        ticket: Ticket | None = None
        session = call.facts.session_id
        if session:
            key = CallKey(
                session, call.facts.upstream, call.facts.tool, digest, call.config_sha256 or None, kind
            )
            claimed = await self.store.write(claim_retry(key, now))
            if claimed is not None:
                log.info("approval ticket %s releases the agent's retry of %s", claimed.id, claimed.tool_name)
                return released(decision, claimed, 0.0, retry=True)
            ticket = await self.store.write(adopt_orphan(key, self.instance, now))
            if ticket is not None:
                log.info("approval ticket %s holds the agent's retry of %s", ticket.id, ticket.tool_name)
        if ticket is None:
            ticket = Ticket(
                id=str(uuid.uuid4()),
                status=TicketStatus.PENDING,
                kind=kind,
                created_at=time_text(now),
                expires_at=time_text(now + timedelta(milliseconds=request.timeout_ms)),
                tool_name=call.facts.tool,
                arguments_digest=digest,
                request=request,
                session_id=session,
                agent_id=call.agent_id,
                config_sha256=call.config_sha256 or None,
                upstream=call.facts.upstream,
                holder=self.instance,
                holder_seen_at=time_text(now),
            )
            max_pending = self.config().approval.max_pending
            if await self.store.write(create_ticket(ticket, max_pending)) is None:
                log.warning(
                    "approval refused for %s: %d tickets are open already (approval.max_pending)",
                    call.facts.tool,
                    max_pending,
                )
                return blocked(
                    decision, None, APPROVAL_CAPACITY_EXHAUSTED, 0.0, details={"max_pending": max_pending}
                )
            log.info("approval ticket %s: %s waits for %s", ticket.id, ticket.tool_name, request.channel)
            self.notices.requested(ticket)
        hold = _Hold(ticket)
        self._holds[ticket.id] = hold
        try:
            return await self._wait(hold, decision, call, started)
        except asyncio.CancelledError as exc:
            # The agent went away (its HTTP request was cancelled), or the kill switch released the
            # call (cancelled with the message ``kill_switch``): close the ticket, record it.
            reason = KILL_SWITCH if exc.args and exc.args[0] == KILL_SWITCH else "client_disconnected"
            self._spawn(self._disconnected(hold.ticket, decision, (loop.time() - started) * 1000, reason))
            raise
        finally:
            self._holds.pop(ticket.id, None)

    async def _wait(self, hold: _Hold, decision: Decision, call: GovernedCall, started: float) -> Settlement:
        loop = asyncio.get_running_loop()
        ticket = hold.ticket
        remaining = parse_time_text(ticket.expires_at) - self.clock()
        deadline = loop.time() + max(0.0, remaining.total_seconds())
        escalate_at: float | None = None
        after = ticket.request.escalation_after_ms
        if after is not None and ticket.escalated_at is None:
            due = parse_time_text(ticket.created_at) + timedelta(milliseconds=after)
            escalate_at = loop.time() + (due - self.clock()).total_seconds()
        while True:
            wake_at = min(deadline, escalate_at) if escalate_at is not None else deadline
            if not hold.wake.done() and wake_at > loop.time():
                await asyncio.wait([hold.wake], timeout=wake_at - loop.time())
            now = loop.time()
            waited = (now - started) * 1000
            if hold.wake.done():
                wake = hold.wake.result()
                hold.wake = loop.create_future()
                if isinstance(wake, _Shutdown):
                    await self.store.write(release_holder(ticket.id, self.instance))
                    log.info(
                        "approval ticket %s stays open (orphaned): the proxy is shutting down", ticket.id
                    )
                    return blocked(decision, ticket, "shutdown_cancelled", waited)
                current = wake if wake is not None else await self.store.read(load_ticket(ticket.id))
                settled = await self._settle(hold, decision, current, waited)
                if settled is not None:
                    return settled
                continue
            if escalate_at is not None and now >= escalate_at:
                escalate_at = None
                if now < deadline:
                    self._spawn(self._escalate(ticket))
                continue
            if now >= deadline:
                expired = await self._expire(hold, decision, waited)
                if expired is not None:
                    return expired

    async def _settle(
        self, hold: _Hold, decision: Decision, ticket: Ticket | None, waited: float
    ) -> Settlement | None:
        """The held call's answer for a ticket that changed; ``None`` to keep waiting."""
        if ticket is None:
            return blocked(decision, hold.ticket, "approval_denied", waited)
        hold.ticket = ticket
        if ticket.status in RELEASABLE:
            if await self.store.write(consume(ticket.id, self.instance, self.clock())):
                return released(decision, ticket, waited, retry=False)
            current = await self.store.read(load_ticket(ticket.id))
            if current is None or current.status in RELEASABLE:
                return blocked(decision, current or ticket, "approval_denied", waited)
            ticket = hold.ticket = current
        match ticket.status:
            case TicketStatus.PENDING:
                return None
            case TicketStatus.ORPHANED:
                # Another proxy took this one for gone (a stalled heartbeat): hold it again.
                await self.store.write(
                    transition(
                        ticket.id,
                        [TicketStatus.ORPHANED],
                        TicketStatus.PENDING,
                        holder=self.instance,
                        holder_seen_at=time_text(self.clock()),
                    )
                )
                return None
            case TicketStatus.DENIED:
                return blocked(decision, ticket, "approval_denied", waited)
            case TicketStatus.TIMEOUT:
                return blocked(decision, ticket, "approval_timeout", waited)
            case TicketStatus.CLIENT_DISCONNECTED:
                return blocked(decision, ticket, "client_disconnected", waited)
            case _:  # consumed by someone else: it cannot release this call
                return blocked(decision, ticket, "approval_denied", waited)

    async def _expire(self, hold: _Hold, decision: Decision, waited: float) -> Settlement | None:
        ticket = hold.ticket
        at = self.clock()
        timed_out = await self.store.write(
            transition(
                ticket.id,
                [TicketStatus.PENDING],
                TicketStatus.TIMEOUT,
                resolved_at=time_text(at),
                resolution_reason="timeout",
                holder=None,
            )
        )
        if not timed_out:  # decided at the last moment
            return await self._settle(hold, decision, await self.store.read(load_ticket(ticket.id)), waited)
        resolved = await self.store.read(load_ticket(ticket.id)) or ticket
        log.info("approval ticket %s timed out (%s)", ticket.id, ticket.request.on_timeout)
        self.notices.resolved(resolved)
        if resolved.request.on_timeout == "allow" and resolved.kind == "rule":
            return released(decision, resolved, waited, retry=False, status="timeout")
        return blocked(decision, resolved, "approval_timeout", waited)

    async def _disconnected(
        self, ticket: Ticket, decision: Decision, waited: float, reason: str = "client_disconnected"
    ) -> None:
        closed = await self.store.write(
            transition(
                ticket.id,
                [TicketStatus.PENDING],
                TicketStatus.CLIENT_DISCONNECTED,
                resolved_at=time_text(self.clock()),
                resolution_reason=reason,
                holder=None,
            )
        )
        if not closed:  # approved meanwhile: leave it to the agent's retry
            await self.store.write(release_holder(ticket.id, self.instance))
            return
        log.info("approval ticket %s closed (%s) after %.0f ms", ticket.id, reason, waited)
        resolved = await self.store.read(load_ticket(ticket.id))
        if resolved is not None:
            self.notices.resolved(resolved)

    async def _escalate(self, ticket: Ticket) -> None:
        targets = list(ticket.request.delegates) or [ticket.request.channel]
        if not await self.store.write(mark_escalated(ticket.id, self.clock(), targets)):
            return
        current = await self.store.read(load_ticket(ticket.id)) or ticket
        log.info("approval ticket %s escalated to %s", ticket.id, ", ".join(targets))
        hold = self._holds.get(ticket.id)
        if hold is not None:
            hold.ticket = current
        self.notices.notify(current, targets, escalation=True)

    # -- operators ----------------------------------------------------------------------------------

    async def decide(self, ticket_id: str, verdict: Verdict) -> Ticket:
        """Record an operator's verdict (REST, Slack). Raises ``TicketNotFound`` / ``TicketConflict``."""
        ticket, resolved = await self.store.write(decide(ticket_id, verdict, self.clock()))
        log.info("approval ticket %s: %s by %s", ticket_id, verdict.verdict, verdict.by)
        if resolved:
            self.notices.resolved(ticket)
            hold = self._holds.get(ticket_id)
            if hold is not None:
                hold.notify(ticket)
        return ticket

    async def on_resolved(self, change: Mapping[str, Any]) -> None:
        """A ticket was resolved somewhere (the change bus): wake its held call, if held here; a
        resync wakes every held call to look its ticket up."""
        ticket_id = change.get("ticket")
        targets = list(self._holds.values()) if change.get("resync") else []
        if isinstance(ticket_id, str) and ticket_id in self._holds:
            targets.append(self._holds[ticket_id])
        for hold in targets:
            hold.notify(None)

    async def get(self, ticket_id: str) -> Ticket | None:
        return await self.store.read(load_ticket(ticket_id))

    async def list(self, status: str | None, limit: int, offset: int) -> tuple[list[Ticket], int]:
        return await self.store.read(list_tickets(status, limit, offset))

    # -- background -----------------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        async def run() -> Any:
            try:
                return await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("approval background work failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                if self._holds:
                    statuses = await self.store.read(ticket_statuses(list(self._holds)))
                    for ticket_id, status in statuses.items():
                        hold = self._holds.get(ticket_id)
                        if hold is not None and status != TicketStatus.PENDING:
                            hold.notify(None)
                if loop.time() - last_beat >= self.heartbeat_interval:
                    last_beat = loop.time()
                    if self._holds:
                        await self.store.write(heartbeat(list(self._holds), self.instance, self.clock()))
                    await self._sweep()
            except Exception:  # the store may be briefly unreachable; try again next round
                log.exception("approval poll failed")

    async def _sweep(self) -> None:
        config = self.config()
        if not any(True for _ in config.approval_routes()) and not self._holds:
            return
        now = self.clock()
        retention = config.audit.retention.seconds
        result = await self.store.write(
            sweep(now, now - timedelta(seconds=self.orphan_after), now - timedelta(seconds=retention))
        )
        if result.orphaned:
            log.warning("%d approval ticket(s) orphaned: the proxy holding them stopped", result.orphaned)
        for ticket_id in result.expired:
            ticket = await self.store.read(load_ticket(ticket_id))
            if ticket is not None:
                self.notices.resolved(ticket)
