"""Capacity grants (``limits/grants.py``): a limit far from full is charged in blocks, the ledger
ends as per-call reservations would have left it, and no process ever lets more through than the
limit, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from helio_proxy.audit.clock import ManualClock
from helio_proxy.limits.charges import RATE_SLOT, Bucket, Charge
from helio_proxy.limits.grants import GRANT_CALLS, GRANT_SECONDS, grant_size
from helio_proxy.limits.windows import Window
from helio_proxy.policy import Allow, Deny
from helio_proxy.store import Store
from helio_proxy.store.base import time_text
from tests.unit.limits import test_running_totals as running_totals
from tests.unit.limits.conftest import Rig, RigFactory
from tests.unit.limits.test_running_totals import totals


def rate(max_calls: int) -> str:
    return f"""
policies:
  rules:
    - name: search
      match: {{tool: search}}
      action: rate_limit
      limits: {{max_calls: {max_calls}, window: 1h, key: tool}}
"""


SPEND = running_totals.SPEND.replace(
    "limit: 1, currency: GBP, window: 1m", "limit: 100000, currency: GBP, window: 1h"
)


def rows(store: Store) -> list[tuple[str, Decimal, str, str | None]]:
    """``(id, amount, occurred_at, audit_id)`` of every limit_events row, oldest first."""

    def job(conn: Connection) -> list[tuple[str, Decimal, str, str | None]]:
        found = conn.execute(
            text("SELECT id, amount, occurred_at, audit_id FROM limit_events ORDER BY occurred_at, id")
        )
        return [(str(i), Decimal(str(a)), str(o), a_id) for i, a, o, a_id in found]

    return store.read_sync(job)


def on_path(store: Store) -> list[str]:
    """Every store write a call waits on from now on (``write_short``, ``write_statement``: the
    reservations; settling a grant goes through ``write``, off the calls' path)."""
    seen: list[str] = []
    for name in ("write_short", "write_statement"):
        original = getattr(store, name)

        async def counted(job: Any, original: Any = original, name: str = name) -> Any:
            seen.append(name)
            return await original(job)

        setattr(store, name, counted)
    return seen


def test_small_limits_and_short_windows_are_never_granted() -> None:
    def charge(limit: int, window: int | None = 3600, amount: Decimal = RATE_SLOT) -> Charge:
        return Charge(Bucket("rate", "r", "v", "tool", "t"), amount, Decimal(limit), Window(window))

    assert grant_size(charge(100)) is None  # 100 / 64 < 2 calls
    assert grant_size(charge(128)) == Decimal(2)
    assert grant_size(charge(1000)) == Decimal(15)  # 1,000 / 64
    assert grant_size(charge(10**9)) == Decimal(GRANT_CALLS)
    assert grant_size(charge(10**9, window=59)) is None
    assert grant_size(charge(10**9, window=None)) is None  # a session pot
    assert grant_size(charge(100_000, amount=Decimal("12.5"))) == Decimal("400")  # 32 x 12.5


async def test_calls_take_their_share_of_a_grant_and_the_ledger_ends_as_per_call(
    rig: RigFactory, clock: ManualClock
) -> None:
    r = await rig(rate(10**6))
    seen = on_path(r.store)
    audit_ids: list[str] = []
    for i in range(100):
        call = dataclasses.replace(r.call("search"), audit_id=uuid.uuid4())
        audit_ids.append(str(call.audit_id))
        settlement = await r.reserve(call)
        assert isinstance(settlement.decision, Allow)
        assert settlement.limits is not None
        [charge] = settlement.limits.charges
        assert charge.used_before == str(i)  # as this process saw the bucket
        clock.advance(0.001)
    # 100 calls, grants of 32: four reservations in the store, not a hundred.
    assert len(seen) == 4
    await r.gate.settle_grants()
    written = rows(r.store)
    assert [a for _, _, _, a in written] == audit_ids  # one row per call, with its audit id
    assert all(amount == 1 for _, amount, _, _ in written)
    times = [o for _, _, o, _ in written]
    assert times == sorted(times)
    assert len(set(times)) == 100  # each call's own time
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (Decimal(100), 100)


async def test_a_spend_grant_charges_each_call_its_own_amount(rig: RigFactory, clock: ManualClock) -> None:
    r = await rig(SPEND)
    amounts = [Decimal("12.5"), Decimal("3"), Decimal("40"), Decimal("0.25")]
    for amount in amounts:
        settlement = await r.run("pay", {"amount": float(amount)})
        assert isinstance(settlement.decision, Allow)
        clock.advance(0.01)
    await r.gate.settle_grants()
    assert [a for _, a, _, _ in rows(r.store)] == amounts
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (sum(amounts), 4)


async def test_a_call_that_never_reached_the_upstream_gives_its_share_back(rig: RigFactory) -> None:
    r = await rig(rate(10**6))
    await r.run("search")
    undelivered = await r.reserve(r.call("search"), deliver=False)
    assert isinstance(undelivered.decision, Allow)
    await undelivered.undelivered()
    await r.run("search")
    await r.gate.settle_grants()
    assert len(rows(r.store)) == 2
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (Decimal(2), 2)


async def test_a_call_released_after_its_grant_was_settled_deletes_its_row(rig: RigFactory) -> None:
    r = await rig(rate(10**6))
    late = await r.reserve(r.call("search"), deliver=False)
    await r.gate.settle_grants()  # the grant is settled with the call's row
    assert len(rows(r.store)) == 1
    await late.undelivered()
    assert rows(r.store) == []
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (Decimal(0), 0)


async def test_a_grant_expires_after_its_time_and_the_next_call_takes_another(
    rig: RigFactory, clock: ManualClock
) -> None:
    r = await rig(rate(10**6))
    seen = on_path(r.store)
    await r.run("search")
    clock.advance(GRANT_SECONDS + 0.5)
    await r.run("search")  # the first grant has expired: a second is taken, the first settled
    assert len(seen) == 2
    await r.gate.settle_grants()
    assert len(rows(r.store)) == 2


async def test_an_unsettled_grant_is_marked_and_counted_in_full(rig: RigFactory, clock: ManualClock) -> None:
    r = await rig(rate(10**6))
    await r.run("search")
    [(_, amount, _, mark)] = rows(r.store)
    assert amount == GRANT_CALLS
    assert mark == "grant:" + time_text(clock.now() + timedelta(seconds=GRANT_SECONDS))
    [(_, total, _)] = totals(r.store)
    assert total == GRANT_CALLS  # counted in full until settled: never less than was let through
    await r.gate.settle_grants()


async def test_past_half_the_limit_every_call_is_reserved_on_its_own(
    rig: RigFactory, clock: ManualClock
) -> None:
    r = await rig(rate(128))  # grants of 2, only up to 64 calls
    seen = on_path(r.store)
    for _ in range(64):
        assert isinstance((await r.run("search")).decision, Allow)
        clock.advance(0.001)
    assert len(seen) == 32
    seen.clear()
    for _ in range(64):
        assert isinstance((await r.run("search")).decision, Allow)
        clock.advance(0.001)
    assert len(seen) == 64  # one each: the bucket is past the grant ceiling
    refused = await r.run("search")
    assert isinstance(refused.decision, Deny)
    assert refused.decision.reason == "rate_limited"
    await r.gate.settle_grants()
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (Decimal(128), 128)


async def test_two_processes_never_let_more_than_the_limit_through(store: Store, clock: ManualClock) -> None:
    """Two gates on one store, calls alternating, then racing: exactly the limit is let through,
    and a call the store refuses while the other gate holds unused granted capacity waits for
    that grant to be settled instead of being refused early."""
    limit = 200  # grants of 3 up to 100 calls
    a, b = await RigFactory(store, clock)(rate(limit)), await RigFactory(store, clock)(rate(limit))
    allowed = 0
    assert isinstance((await a.run("search")).decision, Allow)  # a holds a grant of 3, 2 unused
    allowed += 1
    started = time.monotonic()
    while True:
        decision = (await b.run("search")).decision
        if not isinstance(decision, Allow):
            break
        allowed += 1
        clock.advance(0.001)
    # b reached the limit only once a's unused share had been given back (a's grant expired).
    assert allowed == limit
    assert time.monotonic() - started >= GRANT_SECONDS * 0.9
    assert isinstance((await a.run("search")).decision, Deny)

    async def burst(r: Rig, n: int) -> int:
        results = await asyncio.gather(*(r.run("search") for _ in range(n)))
        return sum(isinstance(s.decision, Allow) for s in results)

    clock.advance(3601)  # the window is empty again: now both race, in bursts
    got = 0
    for _ in range(10):
        got += sum(await asyncio.gather(burst(a, 25), burst(b, 25)))
        clock.advance(0.001)
    assert got == limit
    for r in (a, b):
        await r.gate.settle_grants()
    assert all(mark is None or not mark.startswith("grant:") for *_, mark in rows(store))
    [(_, total, count)] = totals(store)
    assert (total, count) == (Decimal(limit), limit)


async def test_stopping_the_gate_settles_its_grants(rig: RigFactory) -> None:
    r = await rig(rate(10**6))
    for _ in range(5):
        await r.run("search")
    await r.gate.stop()
    marks: list[Any] = [mark for *_, mark in rows(r.store)]
    assert len(marks) == 5
    assert not any(str(m).startswith("grant:") for m in marks)


async def test_a_grant_whose_holder_died_stays_counted_and_is_not_waited_for(
    store: Store, clock: ManualClock
) -> None:
    limit = 200  # grants of 3
    a, b = await RigFactory(store, clock)(rate(limit)), await RigFactory(store, clock)(rate(limit))
    assert isinstance((await a.run("search")).decision, Allow)
    # a dies holding its grant (3 counted, 1 used): it is never settled.
    [grant] = a.gate._grants.values()  # pyright: ignore[reportPrivateUsage]
    grant.closed = True
    a.gate._grants.clear()  # pyright: ignore[reportPrivateUsage]
    clock.advance(10)  # long past its settle-by time
    allowed, started = 0, time.monotonic()
    while isinstance((await b.run("search")).decision, Allow):
        allowed += 1
        clock.advance(0.001)
    assert allowed == limit - 3  # counted in full: more, never less, than was let through
    assert time.monotonic() - started < GRANT_SECONDS  # the refusal did not wait for a dead holder
    await b.gate.settle_grants()
