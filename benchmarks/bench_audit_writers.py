"""Audit records/s with several writer processes on one PostgreSQL: one chain, or one per writer.

    uv run python benchmarks/bench_audit_writers.py [--records 10000] [--writers 1,3] [--json FILE]

Each writer is a process with its own :class:`~helio_proxy.store.postgres.PostgresStore` and
:class:`~helio_proxy.audit.writer.AuditWriter`, as each ``helio start`` replica has. Writers open
their stores first, then start together (a barrier) and each submits ``--records`` realistic
``tool_call`` records (the ones of ``bench_audit.py``). The figure is all records committed divided
by the wall time from the common start to the last writer's last commit.

Layouts:

* ``one chain``: every writer appends to the same schema, so to the same chain: the chain head
  row (``audit_chain``) is locked ``FOR UPDATE`` by each batch's transaction, and writers take turns;
* ``chain per writer``: each writer has a schema of its own, so a chain and a head of its own and
  never waits for another: the best a one-chain-per-writer design could do (before paying for
  the merge that ``helio export`` and ``helio audit verify`` would then need).

Both durabilities: ``batched`` (a transaction per 50 records or 100 ms), and ``strict`` with 64
concurrent callers per writer (group commit, ``synchronous_commit=on``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from contextlib import ExitStack
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from bench_audit import record

from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.audit.verify import verify_chain
from helio_proxy.audit.writer import AuditWriter
from helio_proxy.store import Durability
from helio_proxy.store.postgres import PostgresStore
from helio_proxy.store.testing import postgres_schema

STRICT_CALLERS = 64


async def write(store: PostgresStore, durability: Durability, count: int, offset: int) -> None:
    writer = AuditWriter(store, RowBuilder(Redactor()), durability=durability)
    writer.start()
    if durability == "batched":
        for i in range(count):
            writer.submit(record(offset + i))
            if i % 16 == 15:
                await asyncio.sleep(0)
    else:
        remaining = iter(range(offset, offset + count))

        async def caller() -> None:
            for i in remaining:
                waiter = writer.submit(record(i))
                assert waiter is not None
                assert await waiter

        await asyncio.gather(*(caller() for _ in range(STRICT_CALLERS)))
    await writer.close()
    assert writer.stats.written == count, writer.stats


def writer_process(
    url: str, durability: Durability, count: int, offset: int, barrier: Barrier, out: Any
) -> None:
    store = PostgresStore(url, durability=durability)
    store.open_sync()
    barrier.wait()
    started = time.time()
    asyncio.run(write(store, durability, count, offset))
    out.put((started, time.time()))
    store.close_sync()


def run(writers: int, per_writer_chain: bool, durability: Durability, count: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        urls = [stack.enter_context(postgres_schema()) for _ in range(writers if per_writer_chain else 1)]
        barrier = context.Barrier(writers)
        out = context.Queue()
        processes = [
            context.Process(
                target=writer_process,
                args=(urls[n % len(urls)], durability, count, n * count, barrier, out),
            )
            for n in range(writers)
        ]
        for process in processes:
            process.start()
        times = [out.get(timeout=600) for _ in processes]
        for process in processes:
            process.join(60)
            assert process.exitcode == 0
        elapsed = max(end for _, end in times) - min(start for start, _ in times)
        verified = 0
        for url in urls:
            store = PostgresStore(url)
            store.open_sync()
            try:
                report = verify_chain(store)
            finally:
                store.close_sync()
            assert report.ok, report.problem
            verified += report.verified
    assert verified == writers * count
    return {
        "writers": writers,
        "layout": "chain per writer" if per_writer_chain else "one chain",
        "durability": durability,
        "records": writers * count,
        "records_per_s": round(writers * count / elapsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000, help="records per writer")
    parser.add_argument("--writers", default="1,3")
    parser.add_argument("--durabilities", default="batched,strict")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for durability in args.durabilities.split(","):
        for writers in (int(n) for n in args.writers.split(",")):
            for per_writer in (False, True) if writers > 1 else (False,):
                result = run(writers, per_writer, durability, args.records)
                results.append(result)
                print(
                    f"{durability:8} {writers} writer(s)  {result['layout']:16} "
                    f"{result['records_per_s']:>8,} records/s  ({result['records']:,} records, chain verified)",
                    flush=True,
                )
    text = json.dumps({"records_per_writer": args.records, "results": results}, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
