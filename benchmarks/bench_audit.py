"""Audit writer throughput: records/s on SQLite and PostgreSQL, batched and strict durability.

    uv run python benchmarks/bench_audit.py [--records 20000] [--concurrency 64] [--compare-pg-drivers]

* ``batched``: records are submitted as a busy proxy would (yielding to the loop every few
  records), then flushed; the figure is records committed per second, and the event loop's own
  cost per record (what a call pays on the hot path).
* ``strict``: ``--concurrency`` callers each submit a record and wait for its commit before the
  next, as strict-mode calls do; group commit is what keeps this close to batched. Concurrency 1
  shows the cost of one durable commit per record.

Every record is a realistic ``tool_call`` (arguments, a ~300-byte response, hashed, redacted).
PostgreSQL is the local server (``HELIO_TEST_POSTGRES_URL``), in a throwaway schema.
``--compare-pg-drivers`` also times the choice made in ``store/postgres.py`` (a writer thread on a
synchronous psycopg connection) against psycopg's async API on the event loop, inserting the same
50-row batches.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helio_proxy.audit.records import ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.audit.writer import AuditWriter
from helio_proxy.store import Durability, Store
from helio_proxy.store.testing import Backend, postgres_schema, temporary_store

RESPONSE = {
    "jsonrpc": "2.0",
    "id": 1,
    "result": {
        "content": [
            {"type": "text", "text": "Order A-1001: 2 items, total 42.50 GBP, shipped 2026-03-01 " * 3}
        ],
        "structuredContent": {"order_id": "A-1001", "total": "42.50", "currency": "GBP"},
        "isError": False,
    },
}


def record(i: int) -> ToolCallRecord:
    return ToolCallRecord(
        timestamp=datetime.now(UTC),
        session_id=f"session-{i % 50}",
        session_source="header",
        tool_name="lookup_order",
        tool_input={"order_id": f"A-{i}", "include_items": True, "api_key": "sk-live-bench"},
        upstream_response=RESPONSE,
        upstream_http_status=200,
        upstream_latency_ms=3.2,
        total_duration_ms=3.6,
        proxy_compute_ms=0.4,
        success=True,
        config_sha256="c" * 64,
        metadata={"request_id": i},
    )


async def batched(store: Store, count: int) -> tuple[float, float]:
    writer = AuditWriter(store, RowBuilder(Redactor()), durability="batched")
    writer.start()
    records = [record(i) for i in range(count)]
    loop_time = 0.0
    started = time.perf_counter()
    for i, item in enumerate(records):
        t = time.perf_counter()
        writer.submit(item)
        loop_time += time.perf_counter() - t
        if i % 16 == 15:
            await asyncio.sleep(0)  # let the loop breathe, as it would between calls
    await writer.close()
    elapsed = time.perf_counter() - started
    assert writer.stats.written == count, writer.stats
    return count / elapsed, loop_time / count * 1e6


async def strict(store: Store, count: int, concurrency: int) -> float:
    writer = AuditWriter(store, RowBuilder(Redactor()), durability="strict")
    writer.start()
    remaining = iter(range(count))

    async def caller() -> None:
        for i in remaining:
            waiter = writer.submit(record(i))
            assert waiter is not None
            assert await waiter

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await writer.close()
    return count / elapsed


async def run(backend: Backend, durability: Durability, count: int, concurrency: int) -> str:
    with (
        tempfile.TemporaryDirectory() as directory,
        temporary_store(backend, Path(directory), durability=durability) as store,
    ):
        if durability == "batched":
            rate, loop_us = await batched(store, count)
            return (
                f"{backend:<9} batched              {rate:>10,.0f} records/s   loop {loop_us:5.1f} us/record"
            )
        many = await strict(store, count, concurrency)
        one = await strict(store, max(200, count // 50), 1)
        return (
            f"{backend:<9} strict (group {concurrency:>3})   {many:>10,.0f} records/s   "
            f"strict, 1 caller {one:>8,.0f} records/s"
        )


async def compare_pg_drivers(batches: int) -> None:
    """Insert the same 50-row batches with psycopg in a thread and with psycopg's async API."""
    import psycopg

    from helio_proxy.store.postgres import PostgresStore
    from helio_proxy.store.tables import AUDIT_RECORDS

    builder = RowBuilder(Redactor())
    columns = [c.name for c in AUDIT_RECORDS.columns]
    quoted = ", ".join(f'"{c}"' for c in columns)
    placeholders = ", ".join(f"%({c})s" for c in columns)
    sql = f"INSERT INTO audit_records ({quoted}) VALUES ({placeholders})"  # noqa: S608 - fixed columns

    def rows(offset: int) -> list[dict[str, Any]]:
        out = []
        for i in range(50):
            row = builder.build(record(i), "2026-01-01T00:00:00.000000Z")
            row.update(seq=offset + i + 1, prev_hash=None, hash=None, signature=None)
            out.append(row)
        return out

    prepared = [rows(b * 50) for b in range(batches)]
    with postgres_schema() as url:
        store = PostgresStore(url)
        store.open_sync()  # migrate the schema once
        store.close_sync()
        with psycopg.connect(url) as conn:

            def insert_batch(batch: list[dict[str, Any]]) -> None:
                with conn.cursor() as cursor:
                    cursor.executemany(sql, batch)
                conn.commit()

            started = time.perf_counter()
            for batch in prepared:
                await asyncio.to_thread(insert_batch, batch)
            thread_rate = batches * 50 / (time.perf_counter() - started)
            conn.execute("TRUNCATE audit_records")
            conn.commit()
        async with await psycopg.AsyncConnection.connect(url) as aconn:
            started = time.perf_counter()
            for batch in prepared:
                async with aconn.cursor() as cursor:
                    await cursor.executemany(sql, batch)
                await aconn.commit()
            async_rate = batches * 50 / (time.perf_counter() - started)
    print(f"postgres 50-row batches: psycopg in a writer thread {thread_rate:,.0f} rows/s")
    print(f"postgres 50-row batches: psycopg AsyncConnection    {async_rate:,.0f} rows/s")


async def main(count: int, concurrency: int, compare: bool) -> None:
    print(f"{count} tool_call records per run; strict callers: {concurrency}")
    for backend in ("sqlite", "postgres"):
        for durability in ("batched", "strict"):
            print(await run(backend, durability, count, concurrency), flush=True)
    if compare:
        await compare_pg_drivers(max(20, count // 50))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--compare-pg-drivers", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.records, args.concurrency, args.compare_pg_drivers))
    except ImportError:
        asyncio.run(main(args.records, args.concurrency, args.compare_pg_drivers))
