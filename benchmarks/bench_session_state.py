"""Session state per governed call: the gate check's one read, at 1, 1,000 and 100,000 live
sessions, and for a session 10 or 1,000 calls long.

    uv run python benchmarks/bench_session_state.py [--reads 2000] [--sessions 1,1000,100000]
        [--history 10,1000] [--json FILE]

For each store (``memory``; store-backed ``sqlite`` and ``postgres``, the local server
``HELIO_TEST_POSTGRES_URL`` in a throwaway schema) and each number of live sessions, every session
is given a realistic state (a verified SDK-marked evidence with ~200 bytes of data, a produced
one, 20 completed calls with arguments, a declared dependency, a context value). Then:

* ``snapshot``: what the gateway awaits before deciding a call (``store.snapshot(session,
  history=False)``), sequentially over random sessions; mean, p50 and p99 in microseconds, and the ``SELECT``
  statements one snapshot runs (counted with a SQLAlchemy ``before_cursor_execute`` hook; SQLite
  reads also send the ``BEGIN`` every store read starts with);
* ``record``: what the completion awaits after the call (``record_call``), the same way.

Up to 1,000 sessions every one is written through the store's API; beyond that the first session
is written so and the others are copies of its row (one bulk ``INSERT`` per 5,000 rows; for the
in-memory store, copies of its state), so that 100,000 sessions are set up in seconds. The store
is given caps above the defaults (``max_sessions`` is 10,000 by default) so the table can hold
them.

``--history``: one session that has made that many calls (each with small arguments), then the
same two timings on it alone: the gate check's snapshot, and ``record_call`` (each one a call
more; the store keeps the latest 1,000). Whether a call's cost grows with its session's history.

A table is printed, then the figures as JSON (also written to ``--json FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, insert, select

from helio_proxy.evidence import InMemorySessionStore, SqlSessionStore, StoreLimits
from helio_proxy.store.tables import SESSION_STATE
from helio_proxy.store.testing import temporary_store

AnyStore = InMemorySessionStore | SqlSessionStore

BENCH_LIMITS = StoreLimits(max_sessions=1_000_000, max_total_bytes=8 << 30)
"""Caps above the defaults, so that 100,000 sessions fit."""
WRITE_EACH_UP_TO = 1_000
"""Session counts up to this are written session by session through the API; above, copied."""
COPY_CHUNK = 5_000


async def populate(store: AnyStore, sessions: int) -> list[str]:
    ids = [f"session-{n:06d}" for n in range(sessions)]
    written = ids if sessions <= WRITE_EACH_UP_TO else ids[:1]
    await write_sessions(store, written)
    if len(written) < len(ids):
        await copy_sessions(store, ids[0], ids[1:])
    return ids


async def copy_sessions(store: AnyStore, template: str, ids: list[str]) -> None:
    """Give every session of ``ids`` the state of ``template`` (bulk, for large session counts)."""
    if isinstance(store, InMemorySessionStore):
        sessions: dict[str, Any] = getattr(store, "_sessions")  # noqa: B009 - bench-only bulk load
        state = sessions[template]
        for sid in ids:
            sessions[sid] = copy.deepcopy(state)
        return

    def job(conn: Connection) -> None:
        row = dict(
            conn.execute(select(SESSION_STATE).where(SESSION_STATE.c.session_id == template)).one()._mapping
        )  # pyright: ignore[reportPrivateUsage]
        for start in range(0, len(ids), COPY_CHUNK):
            conn.execute(
                insert(SESSION_STATE), [{**row, "session_id": sid} for sid in ids[start : start + COPY_CHUNK]]
            )

    await store.store.write(job)


def query_plan(conn: Connection, session_id: str) -> str:
    """PostgreSQL's plan for the snapshot's read (first line: an index scan on the primary key)."""
    statement = select(SESSION_STATE.c.state).where(SESSION_STATE.c.session_id == session_id)
    compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
    return str(conn.exec_driver_sql(f"EXPLAIN {compiled}").scalars().first())


async def write_sessions(store: AnyStore, ids: list[str]) -> None:
    for sid in ids:
        for n in range(20):
            await store.record_call(
                sid, "orders.lookup", f"{sid}-c{n}", True, arguments={"order_id": f"A-{n}"}
            )
        await store.put_evidence(
            sid,
            tool_name="orders.lookup",
            evidence_key="order_data",
            data={"order_id": "A-19", "total": "120.00", "items": ["x" * 40, "y" * 40], "note": "z" * 80},
            ttl_seconds=3_600,
            call_id=f"{sid}-c19",
        )
        await store.record_produced(sid, "lookup_done", f"{sid}-c19", "ab" * 32, 3_600, "orders.lookup")
        await store.add_dependencies(sid, "process_refund", ["orders.lookup"])
        await store.put_context(sid, "tier", "gold")


async def timed(reads: int, action: Callable[[int], Awaitable[Any]]) -> list[float]:
    samples: list[float] = []
    for n in range(reads):
        start = time.perf_counter()
        await action(n)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean_us": round(statistics.fmean(samples), 1),
        "p50_us": round(statistics.median(samples), 1),
        "p99_us": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 1),
    }


def summary(numbers: dict[str, float]) -> str:
    return (
        f"mean {numbers['mean_us']:7.0f} µs  p50 {numbers['p50_us']:7.0f} µs  p99 {numbers['p99_us']:7.0f} µs"
    )


def open_store(kind: str, stack: ExitStack, directory: Path) -> AnyStore:
    """A session store of ``kind`` with :data:`BENCH_LIMITS` (an SQL one closes with ``stack``)."""
    if kind == "memory":
        return InMemorySessionStore(limits=BENCH_LIMITS)
    sql = stack.enter_context(temporary_store("sqlite" if kind == "sqlite" else "postgres", directory))
    return SqlSessionStore(sql, limits=BENCH_LIMITS)


async def measure(kind: str, sessions: int, reads: int, directory: Path) -> dict[str, Any]:
    with ExitStack() as stack:
        statements = [0]
        store = open_store(kind, stack, directory)
        if isinstance(store, SqlSessionStore):
            engine: Any = getattr(store.store, "engine")  # noqa: B009 - SqlStore's engine, for the statement count

            @event.listens_for(engine, "before_cursor_execute")
            def _count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:  # pyright: ignore[reportUnusedFunction]
                if statement.lstrip().upper().startswith("SELECT"):
                    statements[0] += 1

        ids = await populate(store, sessions)
        pick = random.Random(7)
        await store.snapshot(ids[0])  # warm the reader pool
        statements[0] = 0
        snaps = await timed(reads, lambda _n: store.snapshot(pick.choice(ids), history=False))
        per_snapshot = statements[0] / reads
        writes = await timed(
            reads // 4, lambda n: store.record_call(pick.choice(ids), "orders.lookup", f"bench-{n}", True)
        )
        plan = None
        if isinstance(store, SqlSessionStore):
            if kind == "postgres":
                plan = await store.store.read(lambda conn: query_plan(conn, ids[-1]))
            await store.store.close()
        result: dict[str, Any] = {
            "store": kind,
            "sessions": sessions,
            "snapshot": figures(snaps),
            "selects_per_snapshot": round(per_snapshot, 2),
            "record_call": figures(writes),
            "plan": plan,
        }
        print(
            f"{kind:8} {sessions:6} sessions  snapshot: {summary(result['snapshot'])}  ({per_snapshot:.2f} SELECT)\n"
            f"{'':8} {'':6}           record:   {summary(result['record_call'])}",
            flush=True,
        )
        if plan is not None:
            print(f"{'':8} {'':6}           plan:     {plan}")
        return result


async def measure_history(kind: str, length: int, reads: int, directory: Path) -> dict[str, Any]:
    with ExitStack() as stack:
        store = open_store(kind, stack, directory)
        for n in range(length):
            await store.record_call("long", f"tool-{n % 7}", f"c{n}", True, arguments={"order_id": f"A-{n}"})
        await store.snapshot("long", history=False)  # warm the reader pool
        snaps = await timed(reads, lambda _n: store.snapshot("long", history=False))
        writes = await timed(
            reads // 4,
            lambda n: store.record_call("long", "tool-0", f"bench-{n}", True, arguments={"order_id": "B"}),
        )
        if isinstance(store, SqlSessionStore):
            await store.store.close()
        result: dict[str, Any] = {
            "store": kind,
            "history": length,
            "snapshot": figures(snaps),
            "record_call": figures(writes),
        }
        print(
            f"{kind:8} {length:6} calls     snapshot: {summary(result['snapshot'])}\n"
            f"{'':8} {'':6}           record:   {summary(result['record_call'])}",
            flush=True,
        )
        return result


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--sessions", default="1,1000,100000")
    parser.add_argument("--stores", default="memory,sqlite,postgres")
    parser.add_argument("--history", default="10,1000", help="calls made by the one-session runs")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    results: list[dict[str, Any]] = []
    for kind in args.stores.split(","):
        for sessions in counts:
            with tempfile.TemporaryDirectory() as directory:
                results.append(await measure(kind, sessions, args.reads, Path(directory)))
    histories: list[dict[str, Any]] = []
    for kind in args.stores.split(","):
        for length in (int(n) for n in args.history.split(",") if n):
            with tempfile.TemporaryDirectory() as directory:
                histories.append(await measure_history(kind, length, args.reads, Path(directory)))
    text = json.dumps({"reads": args.reads, "results": results, "history": histories}, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    asyncio.run(main())
