"""PostgreSQL's one-statement reservation (``helio_limit_reserve``, migration ``0011``) against the
statements it replaces: the same charges, at the same moments, on two twin buckets, must give the
same checks, the same verdicts and the same rows; and the gate's reservation is one round trip (no BEGIN, no COMMIT)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, text

from helio_proxy.audit.clock import ManualClock
from helio_proxy.limits import ledger
from helio_proxy.limits.charges import Bucket, Charge
from helio_proxy.limits.windows import Window
from helio_proxy.policy import Allow, Deny
from helio_proxy.store import Store
from helio_proxy.store.testing import temporary_store
from tests.unit.limits.conftest import START, RigFactory

RATE = """
policies:
  rules:
    - name: search
      match: {tool: search}
      action: rate_limit
      limits: {max_calls: 3, window: 1m, key: tool}
"""


@pytest.fixture
def postgres(tmp_path: Path) -> Any:
    with temporary_store("postgres", tmp_path) as store:
        yield store


def charge(owner: str, kind: str, amount: str, limit: str, window: Window) -> Charge:
    bucket = Bucket(kind, owner, "v1", "tool", "search")  # type: ignore[arg-type]
    return Charge(bucket, Decimal(amount), Decimal(limit), window)


def bucket_state(conn: Connection, key: str) -> tuple[Any, ...]:
    row = conn.execute(
        text(
            "SELECT started_at, last_activity, charge_total, charge_count, counted_from, oldest_at, newest_at "
            "FROM limit_buckets WHERE bucket_key = :key"
        ),
        {"key": key},
    ).one()
    events = conn.execute(
        text(
            "SELECT amount, occurred_at FROM limit_events WHERE bucket_key = :key ORDER BY occurred_at, amount"
        ),
        {"key": key},
    ).all()
    return (*row, [tuple(e) for e in events])


def outcome(reserved: ledger.Reserved) -> tuple[Any, ...]:
    [check] = reserved.checks
    [view] = reserved.views
    return (
        reserved.taken,
        check.usage,
        check.fits,
        view.started_at,
        view.usage,
        len(reserved.limit_event_ids),
    )


@pytest.mark.parametrize(
    ("kind", "amounts", "limit", "window"),
    [
        ("rate", ["1"], "4", Window(60)),
        ("spend", ["0.10", "0.25", "1.5", "2", "0.05"], "3.30", Window(90)),
        ("spend", ["1", "2.50"], "5", Window(None, 600)),  # a session pot, started over when idle
    ],
)
def test_the_function_and_the_statements_agree_charge_for_charge(
    postgres: Store, kind: str, amounts: list[str], limit: str, window: Window
) -> None:
    chance = random.Random(f"{kind}{limit}")
    now = START
    for step in range(160):
        amount = chance.choice(amounts)
        one = charge("one", kind, amount, limit, window)
        each = charge("each", kind, amount, limit, window)

        def job(
            conn: Connection, at: datetime = now, one: Charge = one, each: Charge = each
        ) -> tuple[Any, ...]:
            by_function = ledger.reserve(conn, [one], at)  # PostgreSQL: the one-statement path
            by_statements = ledger.reserve_by_statements(conn, [each], at)
            return (
                outcome(by_function),
                outcome(by_statements),
                bucket_state(conn, one.bucket.key),
                bucket_state(conn, each.bucket.key),
            )

        function_out, statements_out, function_rows, statements_rows = postgres.submit(job).result()
        assert function_out == statements_out, f"step {step}"
        assert function_rows[2:] == statements_rows[2:], f"step {step}"  # totals, window, rows
        assert function_rows[:2] == statements_rows[:2], f"step {step}"  # started_at, last_activity
        # Bursts, pauses within the window, and pauses longer than it (or than a pot's idle_ttl).
        now += timedelta(seconds=chance.choice([0.2, 1, 7, 25, 45, 700]))
    taken = postgres.read_sync(
        lambda c: c.execute(
            text("SELECT count(*) FROM limit_events WHERE bucket_key LIKE '%:one:%'")
        ).scalar()
    )
    assert taken  # the walk took charges, not only refusals


def test_a_bucket_written_before_running_totals_is_added_up_by_the_function(postgres: Store) -> None:
    window = Window(60)
    first = charge("one", "spend", "1.25", "5", window)
    postgres.submit(lambda c: ledger.reserve(c, [first], START)).result()
    postgres.submit(
        lambda c: c.execute(
            text("UPDATE limit_buckets SET charge_total = NULL, charge_count = NULL, oldest_at = NULL")
        )
    ).result()
    later = START + timedelta(seconds=10)
    reserved = postgres.submit(lambda c: ledger.reserve(c, [first], later)).result()
    assert reserved.taken
    assert reserved.checks[0].usage.total == Decimal("1.25")
    state = postgres.read_sync(lambda c: bucket_state(c, first.bucket.key))
    assert (state[2], state[3]) == ("2.50", 2)


async def test_the_gate_reserves_a_rate_limit_on_postgresql_in_one_round_trip_from_the_loop(
    tmp_path: Path,
) -> None:
    with temporary_store("postgres", tmp_path) as store:
        r = await RigFactory(store, ManualClock(START))(RATE)
        await r.run("search")  # the loop's connection is open and the bucket exists
        # What each connection sends, as the wire protocol's messages (libpq's trace).
        writer: Any = await store.write(lambda conn: conn.connection.driver_connection)
        loop_conn: Any = store._loop_conn  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        assert loop_conn is not None
        traces = {"writer": tmp_path / "writer.txt", "loop": tmp_path / "loop.txt"}
        with traces["writer"].open("w") as w, traces["loop"].open("w") as lo:
            for conn, out in ((writer, w), (loop_conn, lo)):
                conn.pgconn.trace(out.fileno())
                conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
            try:
                settlements = [await r.run("search") for _ in range(3)]
            finally:
                writer.pgconn.untrace()
                loop_conn.pgconn.untrace()
        assert [type(s.decision).__name__ for s in settlements] == ["Allow", "Allow", "Deny"]
        details = settlements[2].decision.details or {}  # pyright: ignore[reportAttributeAccessIssue]
        assert details["current_calls"] == 3

        def sent(which: str) -> list[list[str]]:
            lines = traces[which].read_text().splitlines()
            return [line.split("\t") for line in lines if line.startswith("F")]

        assert sent("writer") == []  # no hand-off to the writer thread
        round_trips = [m for m in sent("loop") if m[2] in ("Sync", "Query")]  # each awaits ReadyForQuery
        assert len(round_trips) == 3, sent("loop")  # one per call: no BEGIN, no COMMIT
        parses = [m for m in sent("loop") if m[2] == "Parse"]
        assert len(parses) <= 3
        assert all("helio_limit_reserve" in m[3] for m in parses)


async def test_a_reservation_survives_the_loop_connection_being_killed(tmp_path: Path) -> None:
    with temporary_store("postgres", tmp_path) as store:
        r = await RigFactory(store, ManualClock(START))(RATE)
        assert isinstance((await r.run("search")).decision, Allow)
        loop_conn: Any = store._loop_conn  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        pid = loop_conn.info.backend_pid
        await store.write(lambda conn: conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}))
        # The call that finds the connection dead fails closed; the next one reconnects.
        failed = await r.run("search")
        assert isinstance(failed.decision, Deny)
        assert failed.decision.reason == "store_unavailable"
        assert isinstance((await r.run("search")).decision, Allow)
        assert store._loop_conn is not loop_conn  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        [count] = store.read_sync(lambda c: c.execute(text("SELECT count(*) FROM limit_events")).one())
        assert count == 2  # the failed call charged nothing


async def test_a_reservation_updates_its_bucket_in_place_on_postgresql(tmp_path: Path) -> None:
    """No index covers a column a reservation writes (migration 0012), so PostgreSQL updates the
    bucket's row in place (HOT): no new entry in any of the table's indexes per call."""
    with temporary_store("postgres", tmp_path) as store:
        r = await RigFactory(store, ManualClock(START))(RATE.replace("max_calls: 3", "max_calls: 100"))
        for _ in range(50):
            assert isinstance((await r.run("search")).decision, Allow)
            r.clock.advance(0.01)
        loop_conn: Any = store._loop_conn  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        await loop_conn.execute("SELECT pg_stat_force_next_flush()")
        await loop_conn.execute("SELECT 1")  # the flush happens once that call's transaction ends

        def counts(conn: Connection) -> tuple[int, int]:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            updates, hot = conn.execute(
                text(
                    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'limit_buckets' "
                    "AND schemaname = current_schema()"
                )
            ).one()
            return int(updates), int(hot)

        updates, hot = store.read_sync(counts)
        assert updates >= 50
        assert hot >= updates * 0.9, (updates, hot)


async def test_the_gate_opens_the_loop_connection_at_start_not_on_the_first_call(tmp_path: Path) -> None:
    """Opened on the first limited call, the connect made that call wait (and let a replica whose
    connection was already open take every slot of a limit while another's was still opening)."""
    with temporary_store("postgres", tmp_path) as store:
        r = await RigFactory(store, ManualClock(START))(RATE)
        assert store._loop_conn is None  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        await r.gate.start()
        try:
            opened: Any = store._loop_conn  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
            assert opened is not None
            assert not opened.closed
            assert isinstance((await r.run("search")).decision, Allow)
            assert store._loop_conn is opened  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        finally:
            await r.gate.stop()
