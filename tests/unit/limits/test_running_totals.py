"""Running window totals: a charge is checked against totals kept on the bucket's row, not a sum
of the window's rows, and those totals stay equal to the rows through slides, releases, pruning,
restarted session pots and buckets written before the totals existed (SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, event, text

from helio_proxy.audit.clock import ManualClock
from helio_proxy.gateway.enforcement import GovernedCall
from helio_proxy.policy import Allow, Deny
from helio_proxy.store import Store
from helio_proxy.store.base import time_text
from tests.unit.limits.conftest import Rig, RigFactory

SPEND = """
policies:
  rules:
    - name: pay
      match: {tool: pay}
      action: spend_limit
      limits: {max_spend: {field: '$.amount', limit: 1, currency: GBP, window: 1m}}
"""

RATE_DAY = """
policies:
  rules:
    - name: search
      match: {tool: search}
      action: rate_limit
      limits: {max_calls: 2, window: 24h, key: tool}
"""

RATE_BIG = """
policies:
  rules:
    - name: search
      match: {tool: search}
      action: rate_limit
      limits: {max_calls: 1000000, window: 1h, key: tool}
"""


def pay(r: Rig, amount: str) -> GovernedCall:
    """A ``pay`` call whose amount is the exact JSON number ``amount``."""
    raw = (
        '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "pay", "arguments": {"amount": '
        + amount
        + "}}}"
    )
    return r.call("pay", {"amount": float(amount)}, raw=raw.encode())


def totals(store: Store) -> list[tuple[str, Decimal, int]]:
    """``(bucket_key, charge_total, charge_count)`` of every bucket."""

    def job(conn: Connection) -> list[tuple[str, Decimal, int]]:
        rows = conn.execute(
            text("SELECT bucket_key, charge_total, charge_count FROM limit_buckets ORDER BY bucket_key")
        )
        return [(str(k), Decimal(str(t)), int(c)) for k, t, c in rows]

    return store.read_sync(job)


def live_rows(store: Store, bound: str) -> tuple[Decimal, int]:
    """The rate/spend rows younger than ``bound``, added up exactly here."""

    def job(conn: Connection) -> tuple[Decimal, int]:
        amounts = conn.execute(text("SELECT amount FROM limit_events WHERE occurred_at > :b"), {"b": bound})
        values = [Decimal(str(a)) for (a,) in amounts]
        return sum(values, Decimal(0)), len(values)

    return store.read_sync(job)


async def test_spend_totals_are_exact_decimals_and_follow_the_sliding_window(
    rig: RigFactory, clock: ManualClock
) -> None:
    r = await rig(SPEND)
    for amount in ("0.1", "0.2", "0.3"):
        assert isinstance((await r.reserve(pay(r, amount))).decision, Allow)
        clock.advance(10)
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (Decimal("0.6"), 3)
    blocked = (await r.reserve(pay(r, "0.41"))).decision
    assert isinstance(blocked, Deny)
    assert (blocked.details or {})["current_spend"] == "0.6"
    clock.advance(31)  # the 0.1 taken at +0 s is now 61 s old
    assert isinstance((await r.reserve(pay(r, "0.41"))).decision, Allow)
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (Decimal("0.91"), 3)
    cutoff = r.store.read_sync(lambda c: c.execute(text("SELECT counted_from FROM limit_buckets")).scalar())
    assert live_rows(r.store, str(cutoff)) == (Decimal("0.91"), 3)
    # Aged-out rate/spend rows are gone from the table, not just from the totals.
    rows = r.store.read_sync(lambda c: c.execute(text("SELECT count(*) FROM limit_events")).scalar())
    assert rows == 3


async def test_a_release_takes_the_charge_off_the_totals_and_the_reset_time_moves_on(
    rig: RigFactory, clock: ManualClock
) -> None:
    r = await rig(SPEND)
    first = await r.reserve(pay(r, "0.5"), deliver=False)
    clock.advance(20)
    assert isinstance((await r.reserve(pay(r, "0.5"))).decision, Allow)
    await first.undelivered()
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (Decimal("0.5"), 1)
    blocked = (await r.reserve(pay(r, "0.6"))).decision
    assert isinstance(blocked, Deny)
    # The released charge was the oldest: the window now frees at the remaining one's age-out.
    assert (blocked.details or {})["reset_at"] == "2026-03-01T12:01:20.000Z"


async def test_pruning_an_active_bucket_never_leaves_its_totals_counting_deleted_rows(
    rig: RigFactory, clock: ManualClock
) -> None:
    r = await rig(RATE_DAY)
    await r.run("search")  # at 0 h
    clock.advance(12 * 3600)
    await r.run("search")  # at 12 h
    clock.advance(17 * 3600)  # 29 h: the first charge is older than the window and the prune floor
    await r.gate.prune()
    clock.advance(2 * 3600)  # 31 h: the first charge aged out, the second (19 h old) still counts
    assert isinstance((await r.run("search")).decision, Allow)
    blocked = (await r.run("search")).decision
    assert isinstance(blocked, Deny)
    assert (blocked.details or {})["current_calls"] == 2


RATE_MINUTE = """
policies:
  rules:
    - name: search
      match: {tool: search}
      action: rate_limit
      limits: {max_calls: 1000, window: 1m, key: tool}
"""


def event_times(store: Store) -> list[str]:
    return store.read_sync(
        lambda c: [
            str(t) for (t,) in c.execute(text("SELECT occurred_at FROM limit_events ORDER BY occurred_at"))
        ]
    )


async def test_a_charge_written_behind_the_cutoff_is_left_by_the_check_and_swept_by_the_prune(
    rig: RigFactory, clock: ManualClock
) -> None:
    """A check deletes only what aged out since the bucket's last cutoff (an unbounded range
    revisited every dead index entry on PostgreSQL); a row written at or before that cutoff
    after it moved (a replica whose clock lags) is left to the periodic prune."""
    r = await rig(RATE_MINUTE)
    for _ in range(3):
        await r.run("search")
        clock.advance(20)
    assert isinstance((await r.run("search")).decision, Allow)  # at 60 s: the first charge aged out
    [cutoff] = r.store.read_sync(lambda c: c.execute(text("SELECT counted_from FROM limit_buckets")).one())
    late = "2026-03-01T11:59:59.500Z"  # behind the cutoff (12:00:00.000), written after it moved
    assert late < str(cutoff)
    await r.store.write(
        lambda c: c.execute(
            text(
                "INSERT INTO limit_events (id, bucket_key, amount, occurred_at) SELECT 'late', bucket_key, '1', :at FROM limit_buckets"
            ),
            {"at": late},
        )
    )
    clock.advance(20)
    await r.run("search")  # at 80 s: the 20 s charge aged out; the late row is not in its range
    assert late in event_times(r.store)
    clock.advance(86_400)  # past the prune floor; the bucket stays active
    await r.run("search")
    assert await r.gate.prune() >= 1
    times = event_times(r.store)
    assert late not in times
    assert times[-1] == time_text(clock.now())  # the live charge is kept


async def test_a_bucket_written_before_running_totals_is_added_up_once(rig: RigFactory) -> None:
    r = await rig(RATE_DAY)
    await r.run("search")
    await r.store.write(
        lambda c: c.execute(
            text("UPDATE limit_buckets SET charge_total = NULL, charge_count = NULL, oldest_at = NULL")
        )
    )
    assert isinstance((await r.run("search")).decision, Allow)
    assert isinstance((await r.run("search")).decision, Deny)
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (Decimal(2), 2)


async def test_a_restarted_session_pot_starts_its_totals_over(rig: RigFactory, clock: ManualClock) -> None:
    r = await rig(
        """
budgets:
  - name: per-run
    limit: 100
    window: session
    key: session
    idle_ttl: 1h
    contributors: [{match: {tool: pay}, field: '$.amount'}]
"""
    )
    await r.run("pay", {"amount": 70}, session="a")
    clock.advance(3601)
    assert isinstance((await r.run("pay", {"amount": 90}, session="a")).decision, Allow)
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (Decimal(90), 1)


def statements(store: Store) -> list[str]:
    """Every SQL statement the store runs from now on (appended as it runs)."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", listen)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
    return seen


async def check_cost(r: Rig) -> list[str]:
    seen = statements(r.store)
    assert isinstance((await r.run("search")).decision, Allow)
    return [s for s in seen if "limit_events" in s and "SUM" in s.upper()]


async def test_a_check_reads_no_rows_of_the_window_when_nothing_aged_out(
    rig: RigFactory, clock: ManualClock
) -> None:
    r = await rig(RATE_BIG, grants=False)  # every call reserved on its own (no grant)
    for _ in range(300):
        await r.run("search")
        clock.advance(0.001)
    assert await check_cost(r) == []  # no sum over the 300 charges the window holds
    clock.advance(3600)  # every charge aged out: taken off at once, nothing summed either
    assert await check_cost(r) == []
    [(_, total, count)] = totals(r.store)
    assert (total, count) == (Decimal(1), 1)


async def test_a_call_no_limit_or_budget_matches_never_touches_the_store(rig: RigFactory) -> None:
    r = await rig(RATE_BIG)
    seen = statements(r.store)
    settlement = await r.run("other_tool")
    assert isinstance(settlement.decision, Allow)
    assert settlement.limits is None
    assert seen == []
