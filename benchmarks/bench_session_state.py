"""Session state per governed call: the gate check's one read, at 1 and 1,000 live sessions.

    uv run python benchmarks/bench_session_state.py [--reads 2000] [--sessions 1,1000]

For each store (``memory``; store-backed ``sqlite`` and ``postgres``, the local server
``HELIO_TEST_POSTGRES_URL`` in a throwaway schema) and each number of live sessions, every session
is given a realistic state (a verified SDK-marked evidence with ~200 bytes of data, a produced
one, 20 completed calls with arguments, a declared dependency, a context value). Then:

* ``snapshot``: what the gateway awaits before deciding a call (``store.snapshot(session)``),
  sequentially over random sessions; mean, p50 and p99 in microseconds, and the ``SELECT``
  statements one snapshot runs (counted with a SQLAlchemy ``before_cursor_execute`` hook; SQLite
  reads also send the ``BEGIN`` every store read starts with);
* ``record``: what the completion awaits after the call (``record_call``), the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import event

from helio_proxy.evidence import InMemorySessionStore, SqlSessionStore
from helio_proxy.store.testing import temporary_store

AnyStore = InMemorySessionStore | SqlSessionStore


async def populate(store: AnyStore, sessions: int) -> list[str]:
    ids = [f"session-{n:05d}" for n in range(sessions)]
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
    return ids


async def timed(reads: int, action: Callable[[int], Awaitable[Any]]) -> list[float]:
    samples: list[float] = []
    for n in range(reads):
        start = time.perf_counter()
        await action(n)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"mean {statistics.fmean(samples):7.0f} µs  p50 {statistics.median(samples):7.0f} µs  p99 {p99:7.0f} µs"


async def measure(kind: str, sessions: int, reads: int, directory: Path) -> None:
    with ExitStack() as stack:
        statements = [0]
        if kind == "memory":
            store: AnyStore = InMemorySessionStore()
        else:
            sql = stack.enter_context(
                temporary_store("sqlite" if kind == "sqlite" else "postgres", directory)
            )
            engine: Any = getattr(sql, "engine")  # noqa: B009 - SqlStore's engine, for the statement count

            @event.listens_for(engine, "before_cursor_execute")
            def _count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:  # pyright: ignore[reportUnusedFunction]
                if statement.lstrip().upper().startswith("SELECT"):
                    statements[0] += 1

            store = SqlSessionStore(sql)
        ids = await populate(store, sessions)
        pick = random.Random(7)
        await store.snapshot(ids[0])  # warm the reader pool
        statements[0] = 0
        snaps = await timed(reads, lambda _n: store.snapshot(pick.choice(ids)))
        per_snapshot = statements[0] / reads
        writes = await timed(
            reads // 4, lambda n: store.record_call(pick.choice(ids), "orders.lookup", f"bench-{n}", True)
        )
        if isinstance(store, SqlSessionStore):
            await store.store.close()
        print(
            f"{kind:8} {sessions:5} sessions  snapshot: {summary(snaps)}  ({per_snapshot:.2f} SELECT)\n"
            f"{'':8} {'':5}           record:   {summary(writes)}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--sessions", default="1,1000")
    parser.add_argument("--stores", default="memory,sqlite,postgres")
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    for kind in args.stores.split(","):
        for sessions in counts:
            with tempfile.TemporaryDirectory() as directory:
                await measure(kind, sessions, args.reads, Path(directory))


if __name__ == "__main__":
    asyncio.run(main())
