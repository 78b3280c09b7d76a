"""The limit gate: rate limits, spend limits and budgets, reserved all or nothing per call.

:class:`LimitsGate` implements :class:`~helio_proxy.governance.LimitGate`. For each call
it plans the charges (:mod:`.charges`), takes them in one store transaction (:mod:`.ledger`) and
answers with a :class:`Settlement` carrying the typed :class:`~helio_proxy.governance.LimitFacts`
the call's record reports: ``Allow`` holding a :class:`LedgerReservation` the pipeline
commits once the upstream got the call (or releases, giving the capacity back), or a ``Deny``
(:mod:`.blocks`). A call held back only by budgets an operator may approve over is answered with
``Settlement.over_budget`` set: the enforcer asks operators and reserves again, approved.
:meth:`LimitsGate.reserve` and its dry-run twin :meth:`LimitsGate.peek` share the pure steps
(the plan, the refusals that need no counter, what the checked charges mean) and differ only in
where the usage comes from and in their side effects. The config is read from the current
snapshot on every call, so rules and budgets hot-reload; a budget whose limit, currency, window or key changed starts a new epoch.

If the store cannot be reached, calls that feed a limit are blocked with ``limits_unavailable``.

Operator events: ``limit_warning`` when a bucket reaches :data:`WARN_AT` of its limit (once per
crossing), ``budget_update`` for every budget charge that reached the upstream, and
``budget_breached`` when a budget stops a call (or sends it for approval).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from helio_proxy.config.root import HelioConfig
from helio_proxy.governance import ChargeFacts, GovernedCall, InvalidAmountFacts, LimitFacts, Settlement
from helio_proxy.limits import blocks, ledger
from helio_proxy.limits.amounts import decimal_text
from helio_proxy.limits.budgets import CompiledBudget, compile_budgets
from helio_proxy.limits.catalog import budget_shapes, rule_shapes
from helio_proxy.limits.charges import Charge, LimitShape, Plan, plan, rule_shape
from helio_proxy.limits.grants import (
    GRANT_CEILING,
    GRANT_SECONDS,
    Grant,
    grant_charge,
    grant_mark,
    grant_size,
)
from helio_proxy.limits.ledger import Check, GrantUse, Reserved, breaches
from helio_proxy.limits.mirror import Mirror
from helio_proxy.limits.windows import EMPTY, utilization
from helio_proxy.policy import Allow, Deny, RateLimit, SpendLimit
from helio_proxy.store.base import Store, parse_time_text

log = logging.getLogger("helio_proxy.limits")

Limited = Allow | RateLimit | SpendLimit
Publish = Callable[[str, dict[str, Any]], object]

WARN_AT: Final = 0.8
"""Share of a limit at which a ``limit_warning`` event is published."""

_GRANT_CEILING: Final = float(GRANT_CEILING)

PRUNE_INTERVAL_SECONDS: Final = 600.0
"""How often expired rate/spend rows and idle buckets are deleted."""

PRUNE_FLOOR_SECONDS: Final = 86_400
"""Rows and buckets are kept at least this long, whatever the windows (a replica may still be on
an older config with a longer window)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _as_allow(decision: Limited) -> Allow:
    if isinstance(decision, Allow):
        return decision
    return Allow(
        rule=decision.rule,
        rule_index=decision.rule_index,
        reason=decision.reason,
        feedback=decision.feedback,
        flagged_destructive=decision.flagged_destructive,
        drifted_aspects=decision.drifted_aspects,
    )


def _reset_after(check: Check, now: datetime) -> datetime | None:
    """When a bucket just charged at ``now`` frees its oldest share (``None`` for a session pot)."""
    seconds = check.charge.window.seconds
    if seconds is None:
        return None
    return (check.usage.oldest or now) + timedelta(seconds=seconds)


def _charge_facts(check: Check) -> ChargeFacts:
    charge = check.charge
    bucket = charge.bucket
    return ChargeFacts(
        kind=bucket.kind,
        name=bucket.owner,
        bucket=bucket.ledger_key,
        amount=decimal_text(charge.amount),
        used_before=decimal_text(check.usage.total),
        limit=decimal_text(charge.limit),
        window=charge.window.label,
        fits=check.fits,
        currency=charge.currency,
        epoch=int(bucket.version) if bucket.kind == "budget" else None,
    )


def _facts(plan: Plan, checks: tuple[Check, ...] | list[Check], *, charged: bool) -> LimitFacts:
    """What the call's record says about its limits (``metadata.limits``)."""
    unresolved = plan.unresolved
    return LimitFacts(
        charged=charged,
        charges=tuple(_charge_facts(c) for c in checks),
        invalid=tuple(
            InvalidAmountFacts(i.kind, i.owner, i.invalid.code, i.invalid.detail) for i in plan.invalid
        ),
        session_unresolved=(unresolved.kind, unresolved.owner) if unresolved is not None else None,
    )


class _Charged:
    """A call's charges, already counted: committing only publishes the call's events."""

    def __init__(self, gate: LimitsGate, events: list[tuple[str, dict[str, Any]]]) -> None:
        self._gate = gate
        self._events = events

    async def commit(self) -> None:
        self.commit_now()

    def commit_now(self) -> bool:
        for type_, data in self._events:
            self._gate.publish(type_, data)
        return True


class LedgerReservation(_Charged):
    """One call's charges: committed when the upstream got the call, deleted when it never did."""

    def __init__(
        self, gate: LimitsGate, reserved: Reserved, events: list[tuple[str, dict[str, Any]]]
    ) -> None:
        super().__init__(gate, events)
        self._reserved = reserved

    async def release(self) -> None:
        reserved = self._reserved
        await self._gate.store.write(
            functools.partial(
                ledger.release,
                limit_event_ids=reserved.limit_event_ids,
                budget_event_ids=reserved.budget_event_ids,
            )
        )
        for check in reserved.checks:
            self._gate.mirror.release(check.charge.bucket.key, check.charge.amount)


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Mark a task's exception as seen (each caller awaiting it gets it too)."""
    if not task.cancelled():
        task.exception()


class GrantReservation(_Charged):
    """One call's share of a capacity grant (:mod:`.grants`): kept in memory until the grant
    is settled; a call that never reached the upstream gives it back."""

    def __init__(
        self, gate: LimitsGate, grant: Grant, use: GrantUse, events: list[tuple[str, dict[str, Any]]]
    ) -> None:
        super().__init__(gate, events)
        self._grant = grant
        self._use = use

    async def release(self) -> None:
        grant, use = self._grant, self._use
        if grant.give_back(use):
            return
        # The grant was settled (or is being settled) with this call's row: delete that row,
        # once the settle has written it.
        await self._gate.settled(grant)
        await self._gate.store.write(
            functools.partial(ledger.release, limit_event_ids=(use.entry_id,), budget_event_ids=())
        )
        self._gate.mirror.release(grant.key, use.amount)


class LimitsGate:
    """Rate limits, spend limits and budgets over a durable store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], HelioConfig],
        *,
        clock: Callable[[], datetime] = _utc_now,
        publish: Publish | None = None,
        warn_at: float = WARN_AT,
        grants: bool = True,
    ) -> None:
        self.store = store
        self.config = config
        """The config snapshot in force (read on every call: limits hot-reload with policies)."""
        self.clock = clock
        self._publish = publish
        self.warn_at = warn_at
        self.mirror = Mirror()
        self.epochs: dict[str, int] = {}
        """Budget name → epoch, as the ledger last reported."""
        self._warned: set[str] = set()
        self._compiled: tuple[HelioConfig, tuple[CompiledBudget, ...]] | None = None
        self._shapes: (
            tuple[HelioConfig, dict[tuple[str, str, str], LimitShape], dict[int, LimitShape]] | None
        ) = None
        """The config's rule limits, by ``(kind, owner, version)`` and by rule index (per snapshot)."""
        self._reconciled_for: HelioConfig | None = None
        self._reconcile_lock = asyncio.Lock()
        self._pruner: asyncio.Task[None] | None = None
        self.grants = grants
        """Take capacity grants for rate and spend limits far from full (:mod:`.grants`)."""
        self._grants: dict[str, Grant] = {}
        """Bucket key → the grant this process is using."""
        self._granting: dict[str, asyncio.Task[Grant | None]] = {}
        """Bucket key → the grant being taken (calls meanwhile wait for it)."""
        self._settling: dict[Grant, asyncio.Task[None]] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Settle budget epochs, load the local view of every live bucket, open the connection
        one-statement reservations go out on (so the first limited call does not wait for it),
        start pruning."""
        await self.reconciled(self.config())
        await self.load()
        await self.store.prepare_statements()
        self._pruner = asyncio.create_task(self._prune_forever(), name="helio-limits-prune")

    async def stop(self) -> None:
        """Stop pruning, and settle every grant (the unused capacity is given back)."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        await self.settle_grants()

    async def reconciled(self, config: HelioConfig) -> None:
        """Make sure the ledger's budget epochs match ``config`` (once per config snapshot)."""
        if self._reconciled_for is config:
            return
        async with self._reconcile_lock:
            if self._reconciled_for is config:
                return
            budgets = [(b.name, b.fingerprint) for b in self._budgets(config)]
            now = self.clock()
            self.epochs = await self.store.write(
                functools.partial(ledger.reconcile, budgets=budgets, now=now)
            )
            self._reconciled_for = config

    async def load(self) -> int:
        """Fill the local view from the store (startup); the number of buckets loaded."""
        config = self.config()
        shapes = [*rule_shapes(config), *budget_shapes(config, self.epochs)]
        by_triple = {s.triple: s for s in shapes}
        now = self.clock()

        def job(conn: Any) -> list[ledger.BucketView]:
            rows, _ = ledger.bucket_rows(conn, list(by_triple))
            views: list[ledger.BucketView] = []
            for row in rows:
                shape = by_triple[(row.bucket.kind, row.bucket.owner, row.bucket.version)]
                charge = shape.charge(row.bucket)
                usage = ledger.bucket_usage(conn, charge, row.started_at, now)
                views.append(ledger.BucketView(row.bucket, shape.window, row.started_at, usage))
            return views

        views = await self.store.read(job)
        self.mirror.put(views)
        return len(views)

    async def prune(self) -> int:
        """Delete rate/spend rows no window reaches and buckets idle past every window."""
        config = self.config()
        now = self.clock()
        rule_windows = [s.window.seconds or 0 for s in rule_shapes(config)]
        budget_windows = [max(b.window.seconds or 0, b.window.idle_ttl or 0) for b in self._budgets(config)]
        events_keep = max([PRUNE_FLOOR_SECONDS, *rule_windows])
        buckets_keep = max([events_keep, *budget_windows])
        removed = await self.store.write(
            functools.partial(
                ledger.prune,
                events_before=now - timedelta(seconds=events_keep),
                buckets_idle_before=now - timedelta(seconds=buckets_keep),
            )
        )
        self.mirror.prune(now)
        # A bucket that holds nothing any more is below any warning threshold.
        self._warned = {key for key in self._warned if key in self.mirror}
        return removed

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
            try:
                await self.prune()
            except Exception:
                log.exception("pruning expired limit rows failed; retrying at the next interval")

    # -- the gate --------------------------------------------------------------------------------

    def budget_utilisation(self) -> list[tuple[str, float]]:
        """``(budget, spent / limit)`` of each configured budget's fullest bucket still in its window."""
        now = self.clock()
        limits = {budget.name: budget.limit for budget in self.config().budgets}
        fullest: dict[str, float] = dict.fromkeys(limits, 0.0)
        for view in self.mirror.live(now):
            bucket = view.bucket
            limit = limits.get(bucket.owner)
            if bucket.kind != "budget" or limit is None:
                continue
            fullest[bucket.owner] = max(fullest[bucket.owner], float(view.usage.total / limit))
        return sorted(fullest.items())

    def limit_utilisation(self) -> list[tuple[str, str, float]]:
        """``(rule, kind, counted / limit)`` of each configured rate or spend limit's fullest bucket
        still in its window (``kind``: ``rate`` or ``spend``), from the local view: no store read."""
        now = self.clock()
        shapes = self._rule_shapes(self.config())
        fullest = {(shape.owner, shape.kind): 0.0 for shape in shapes.values()}
        for view in self.mirror.live(now):
            bucket = view.bucket
            shape = shapes.get((bucket.kind, bucket.owner, bucket.version))
            if shape is None or shape.limit <= 0:
                continue
            key = (bucket.owner, bucket.kind)
            fullest[key] = max(fullest[key], float(view.usage.total / shape.limit))
        return sorted((rule, kind, ratio) for (rule, kind), ratio in fullest.items())

    def _rule_shapes(self, config: HelioConfig) -> dict[tuple[str, str, str], LimitShape]:
        return self._catalog(config)[1]

    def _catalog(
        self, config: HelioConfig
    ) -> tuple[HelioConfig, dict[tuple[str, str, str], LimitShape], dict[int, LimitShape]]:
        cached = self._shapes
        if cached is None or cached[0] is not config:
            shapes = rule_shapes(config)
            by_index = {shape.rule_index: shape for shape in shapes if shape.rule_index is not None}
            cached = self._shapes = (config, {shape.triple: shape for shape in shapes}, by_index)
        return cached

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        if self._publish is None:
            return
        try:
            self._publish(type_, data)
        except Exception:  # an event must never fail a call
            log.exception("publishing a %s event failed", type_)

    def _budgets(self, config: HelioConfig) -> tuple[CompiledBudget, ...]:
        compiled = self._compiled
        if compiled is None or compiled[0] is not config:
            compiled = (config, compile_budgets(config))
            self._compiled = compiled
        return compiled[1]

    def _plan(self, decision: Limited, call: GovernedCall, config: HelioConfig) -> Plan:
        return plan(self._rule_limit(decision, config), call, config, self._budgets(config))

    def _rule_limit(self, decision: Limited, config: HelioConfig) -> LimitShape | None:
        """The decision's rule limit as the snapshot's catalog has it (worked out once per config)."""
        if isinstance(decision, Allow):
            return None
        index = decision.rule_index
        found = self._catalog(config)[2].get(index) if index is not None else None
        if found is not None and found.limits is decision.limits:
            return found
        # Not a rule of this snapshot's (never expected): worked out from the decision itself.
        made = rule_shape(index or 0, decision.rule or "", decision.action, decision.limits)
        assert made is not None
        return made

    def _refused(self, decision: Limited, planned: Plan, now: datetime) -> Deny | None:
        """A block that needs no counter: no session for a session-keyed limit, or an invalid amount."""
        if planned.unresolved is not None:
            return blocks.session_unresolved(decision, planned.unresolved)
        spend = [i for i in planned.invalid if i.kind == "spend"]
        if spend:
            return blocks.invalid_spend(decision, spend[0], now)
        if planned.invalid:
            return blocks.budget_exceeded(decision, [], list(planned.invalid), now)
        return None

    def _start(
        self, decision: Limited, call: GovernedCall
    ) -> tuple[Plan, datetime, HelioConfig] | Settlement:
        """The part of a check that needs no counter, shared by :meth:`reserve` and :meth:`peek`:
        the call's plan, or the settlement when the plan alone decides (nothing to charge, or a
        block such as an unresolved session)."""
        config = self.config()
        if isinstance(decision, Allow) and self._charges_nothing(decision, config):
            return Settlement(decision)  # nothing to plan
        planned = self._plan(decision, call, config)
        if planned.empty:
            return Settlement(_as_allow(decision))
        now = self.clock()
        refused = self._refused(decision, planned, now)
        if refused is not None:
            return Settlement(refused, limits=_facts(planned, [], charged=False))
        return planned, now, config

    def _verdict(
        self, decision: Limited, over: list[Check], facts: LimitFacts, now: datetime, *, ask: bool
    ) -> Settlement:
        """What the checked charges mean, shared by :meth:`reserve` and :meth:`peek` (pure).

        ``over``: the breached charges. ``ask``: a call held back only by budgets an operator may
        approve over is returned with ``over_budget`` set (the enforcer asks); a dry run (``ask``
        false) waits for no one, so such a budget reports as exceeded."""
        if not over:
            return Settlement(_as_allow(decision), limits=facts)
        denied = self._deny(decision, over, now)
        if denied is not None:
            return Settlement(denied, limits=facts)
        if not ask:
            return Settlement(blocks.budget_exceeded(decision, over, [], now), limits=facts)
        return Settlement(
            blocks.budget_approval_unavailable(decision, over, now),
            limits=facts,
            over_budget=self._over_budget(over, now),
        )

    def charges_nothing(self, decision: Limited) -> bool:
        return self._charges_nothing(decision, self.config())

    def _charges_nothing(self, decision: Limited, config: HelioConfig) -> bool:
        return isinstance(decision, Allow) and not self._budgets(config)  # no rule limit, no budget

    async def reserve(self, decision: Limited, call: GovernedCall, *, approved: bool = False) -> Settlement:
        """Take the call's charges from every bucket it feeds, all or nothing."""
        started = self._start(decision, call)
        if isinstance(started, Settlement):
            return started
        planned, now, config = started
        charges = planned.charges
        if self.grants and len(charges) == 1 and self._reconciled_for is config:
            grant = self._grants.get(charges[0].bucket.key)
            if grant is not None:  # the common case under a grant: no await, no store
                granted = self._use_grant(grant, decision, call, planned, now)
                if granted is not None:
                    return granted
        size = grant_size(charges[0]) if self.grants and len(charges) == 1 else None
        try:
            await self.reconciled(config)
            if size is not None:
                granted = await self._from_grant(decision, call, planned, now, size)
                if granted is not None:
                    return granted
            reserved = await self._reserve_call(charges, now, call, approved=approved)
            if not reserved.taken and size is not None and await self._grants_settled(charges[0]):
                # Unused capacity another process held is back: checked once more.
                now = self.clock()
                reserved = await self._reserve_call(charges, now, call, approved=approved)
        except Exception:
            log.exception("limits could not be checked (store unavailable); blocking the call")
            return Settlement(blocks.limits_unavailable(decision), limits=_facts(planned, [], charged=False))
        self.epochs.update(reserved.epochs)
        self.mirror.put(reserved.views)
        facts = _facts(planned, reserved.checks, charged=reserved.taken)
        if reserved.taken:
            reservation = LedgerReservation(self, reserved, self._events(reserved, call, now))
            return Settlement(_as_allow(decision), limits=facts, reservations=[reservation])
        over = breaches(reserved.checks, approved=approved)
        for check in over:
            if check.charge.budget is not None:
                self.publish("budget_breached", self._breach_event(check, call, now))
        return self._verdict(decision, over, facts, now, ask=True)

    async def _reserve_call(
        self, charges: tuple[Charge, ...], now: datetime, call: GovernedCall, *, approved: bool
    ) -> Reserved:
        """The call's own charges, reserved in the store."""
        return await self._reserve(
            charges,
            now,
            call.audit_ref,
            approved=approved,
            tool=call.facts.tool,
            session_id=call.facts.session_id,
        )

    async def _reserve(
        self,
        charges: tuple[Charge, ...],
        now: datetime,
        audit_id: str | None,
        *,
        approved: bool = False,
        tool: str | None = None,
        session_id: str | None = None,
    ) -> Reserved:
        """``charges`` reserved in the store, one statement where the backend can (a call's, or a
        grant's block)."""
        if ledger.in_one_statement(self.store.dialect, charges):
            return await self.store.write_statement(ledger.ReserveInOne(charges[0], now, audit_id))
        return await self.store.write_short(
            functools.partial(
                ledger.reserve,
                charges=charges,
                now=now,
                approved=approved,
                tool=tool,
                session_id=session_id,
                audit_id=audit_id,
            )
        )

    # -- capacity grants (see limits/grants.py) --------------------------------------------------

    def _use_grant(
        self, grant: Grant, decision: Limited, call: GovernedCall, planned: Plan, now: datetime
    ) -> Settlement | None:
        """The call's share of ``grant`` (``None``, and the grant closed, when it cannot take it)."""
        charge = planned.charges[0]
        taken = grant.take(charge, now, call.audit_ref)
        if taken is None:
            self._close(grant)
            return None
        use, before = taken
        if not grant.left:
            self._close(grant)
        check = Check(charge, before)
        if self.warn_at > _GRANT_CEILING:
            # A grant keeps its bucket at most half full: below the warning threshold.
            self._warned.discard(charge.bucket.key)
            events: list[tuple[str, dict[str, Any]]] = []
        else:
            events = self._events(Reserved((check,), True), call, now)
        return Settlement(
            _as_allow(decision),
            limits=_facts(planned, (check,), charged=True),
            reservations=[GrantReservation(self, grant, use, events)],
        )

    async def _from_grant(
        self, decision: Limited, call: GovernedCall, planned: Plan, now: datetime, size: Decimal
    ) -> Settlement | None:
        """The call's share of a grant on its bucket, taking one of ``size`` if needed; ``None``
        when the call must be reserved on its own (the bucket is too full for grants)."""
        charge = planned.charges[0]
        key = charge.bucket.key
        for _ in range(3):  # a grant another call used up meanwhile: take the next one
            grant = self._grants.get(key)
            if grant is not None:
                granted = self._use_grant(grant, decision, call, planned, now)
                if granted is not None:
                    return granted
            pending = self._granting.get(key)
            if pending is None:
                if self.mirror.usage(charge, now).total + size > charge.limit * GRANT_CEILING:
                    return None
                pending = asyncio.create_task(self._take_grant(charge, size, now), name="helio-limits-grant")
                pending.add_done_callback(_retrieved)  # its callers may all have been cancelled
                self._granting[key] = pending
            if await asyncio.shield(pending) is None:
                return None
        return None

    async def _take_grant(self, charge: Charge, size: Decimal, now: datetime) -> Grant | None:
        """Reserve a grant of ``size`` on the charge's bucket (``None``: past the grant ceiling)."""
        key = charge.bucket.key
        try:
            block = grant_charge(charge, size)
            reserved = await self._reserve((block,), now, grant_mark(now))
            self.mirror.put(reserved.views)
            if not reserved.taken:
                return None
            grant = Grant(
                block,
                reserved.limit_event_ids[0],
                now,
                reserved.checks[0].usage,
                time.monotonic() + GRANT_SECONDS,
                left=size,
            )
            self._grants[key] = grant
            asyncio.get_running_loop().call_later(GRANT_SECONDS, self._close, grant)
            return grant
        finally:
            self._granting.pop(key, None)

    def _close(self, grant: Grant) -> None:
        """No call may use the grant any more: settle it (in the background)."""
        if grant.closed:
            return
        grant.closed = True
        if self._grants.get(grant.key) is grant:
            del self._grants[grant.key]
        task = asyncio.get_running_loop().create_task(self._settle(grant), name="helio-limits-settle")
        self._settling[grant] = task
        task.add_done_callback(lambda _: self._settling.pop(grant, None))

    async def _settle(self, grant: Grant) -> None:
        uses, unused = tuple(grant.uses), grant.unused
        try:
            await self.store.write(
                functools.partial(ledger.settle_grant, key=grant.key, grant_id=grant.grant_id, uses=uses)
            )
        except Exception:
            log.exception(
                "settling a limit grant failed; its unused part (%s) stays counted until the window passes it",
                unused,
            )
            return
        self.mirror.settled(grant.key, unused, len(uses))

    async def settled(self, grant: Grant) -> None:
        """Wait until ``grant`` is settled (at once if it is not being settled)."""
        task = self._settling.get(grant)
        if task is not None:
            await asyncio.shield(task)

    async def _grants_settled(self, charge: Charge) -> bool:
        """After the store refused ``charge``: wait for the bucket's unsettled grants (this
        process's, then any other's until it is settled or its settle-by time has passed, at
        most twice :data:`GRANT_SECONDS`); ``True`` if there were any, so the call is worth
        checking again."""
        key = charge.bucket.key
        mine = [task for grant, task in self._settling.items() if grant.key == key]
        if mine:
            await asyncio.gather(*(asyncio.shield(task) for task in mine), return_exceptions=True)
        waited = bool(mine)
        give_up = time.monotonic() + 2 * GRANT_SECONDS
        while time.monotonic() < give_up:
            # A grant taken earlier than this is past its settle-by time by more than a grant's
            # life: its holder is gone, and it is not waited for (see below).
            since = self.clock() - timedelta(seconds=3 * GRANT_SECONDS)
            deadline = await self.store.read(functools.partial(ledger.grant_deadline, key=key, since=since))
            if deadline is None:
                break
            left = (parse_time_text(deadline) - self.clock()).total_seconds()
            if left < -GRANT_SECONDS:
                break  # its holder is gone: it stays counted until the window passes it
            waited = True
            await asyncio.sleep(min(max(left, 0.0) + 0.05, GRANT_SECONDS / 4))
        return waited

    async def settle_grants(self) -> None:
        """Settle every grant this process holds now (shutdown, tests)."""
        for pending in list(self._granting.values()):
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
        for grant in list(self._grants.values()):
            self._close(grant)
        while self._settling:
            await asyncio.gather(*self._settling.values(), return_exceptions=True)

    def _deny(self, decision: Limited, over: list[Check], now: datetime) -> Deny | None:
        """The block for breached charges; ``None`` when all of them may be approved over."""
        for check in over:
            if check.charge.bucket.kind == "rate":
                return blocks.rate_limited(decision, check, now)
            if check.charge.bucket.kind == "spend":
                return blocks.spend_limited(decision, check, now)
        if all(c.charge.waivable for c in over):
            return None
        return blocks.budget_exceeded(decision, over, [], now)

    def _over_budget(self, over: list[Check], now: datetime) -> list[dict[str, Any]]:
        """What an operator is asked about each budget the call would overspend."""
        breached: list[dict[str, Any]] = []
        for check in over:
            entry = blocks.budget_entry(check, now)
            budget = check.charge.budget
            assert budget is not None
            entry["current"] = entry["spent"]
            entry["amount"] = entry["attempted_amount"]
            entry["approval"] = budget.approval.model_dump(exclude_none=True) if budget.approval else None
            breached.append(entry)
        return breached

    def _events(
        self, reserved: Reserved, call: GovernedCall, now: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        """What to publish once the charges are committed."""
        events: list[tuple[str, dict[str, Any]]] = []
        for check in reserved.checks:
            charge = check.charge
            key = charge.bucket.key
            after = check.usage.total + charge.amount
            share = utilization(after, charge.limit)
            if share >= self.warn_at:
                if key not in self._warned:
                    self._warned.add(key)
                    events.append(("limit_warning", self._warning_event(check, share, now)))
            else:
                self._warned.discard(key)
            if charge.budget is not None:
                events.append(("budget_update", self._budget_event(check, call, now)))
        return events

    def _warning_event(self, check: Check, share: float, now: datetime) -> dict[str, Any]:
        charge = check.charge
        bucket = charge.bucket
        usage = check.usage
        return {
            "kind": bucket.kind,
            "name": bucket.owner,
            "bucket": bucket.ledger_key,
            "current": decimal_text(usage.total + charge.amount),
            "limit": decimal_text(charge.limit),
            "currency": charge.currency,
            "utilization": round(share, 4),
            "window": charge.window.label,
            "reset_at": blocks.iso(_reset_after(check, now)),
        }

    def _budget_event(self, check: Check, call: GovernedCall, now: datetime) -> dict[str, Any]:
        charge = check.charge
        spent = check.usage.total + charge.amount
        return {
            "name": charge.bucket.owner,
            "bucket": charge.bucket.ledger_key,
            "epoch": int(charge.bucket.version),
            "tool": call.facts.tool,
            "amount": decimal_text(charge.amount),
            "spent": decimal_text(spent),
            "limit": decimal_text(charge.limit),
            "remaining": decimal_text(max(charge.limit - spent, Decimal(0))),
            "currency": charge.currency,
        }

    def _breach_event(self, check: Check, call: GovernedCall, now: datetime) -> dict[str, Any]:
        entry = blocks.budget_entry(check, now)
        entry["bucket"] = check.charge.bucket.ledger_key
        entry["tool"] = call.facts.tool
        return entry

    def peek(self, decision: Limited, call: GovernedCall) -> Settlement:
        """What :meth:`reserve` would answer from this proxy's local view, taking nothing (dry-run)."""
        started = self._start(decision, call)
        if isinstance(started, Settlement):
            return started
        planned, now, _ = started
        checks: list[Check] = []
        for charge in planned.charges:
            if charge.budget is None:
                checks.append(Check(charge, self.mirror.usage(charge, now)))
                continue
            # A budget the ledger has no epoch for yet holds nothing.
            epoch = self.epochs.get(charge.bucket.owner)
            resolved = charge.with_epoch(epoch or 0)
            checks.append(Check(resolved, self.mirror.usage(resolved, now) if epoch else EMPTY))
        facts = _facts(planned, checks, charged=False)
        return self._verdict(decision, breaches(checks, approved=False), facts, now, ask=False)
