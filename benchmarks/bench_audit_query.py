"""Audit listing at scale: the console's ``GET /api/audit`` query with each filter, at 1,000,000
records, on SQLite and PostgreSQL.

    uv run python benchmarks/bench_audit_query.py [--rows 1000000] [--backend sqlite|postgres|both]

The store is filled with synthetic ``tool_call`` records spread over 30 days (50 tools with a
skewed popularity, 5 upstreams, 85 % allow / 10 % deny / 5 % require_approval, six block reasons,
20 rules, 50,000 sessions, 100 agents, arguments holding order ids, cities and free text), written
straight into ``audit_records`` (the hash chain is not what is measured). Migrations run first, so
the indexes are the ones a real store has.

Each query is what the route runs (:func:`helio_proxy.audit.console.page`: a 100-record page,
newest first, decoded), timed warm: the median and the worst of ``--repeat`` runs, plus the
second page through its cursor. The target is < 100 ms for every filter.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, insert

from helio_proxy.audit.console import ConsoleFilter, page
from helio_proxy.store import Store
from helio_proxy.store.tables import AUDIT_RECORDS
from helio_proxy.store.testing import Backend, temporary_store

TARGET_MS: Final = 100.0
BATCH: Final = 20_000
START: Final = datetime(2026, 11, 1, tzinfo=UTC)
SPAN: Final = timedelta(days=30)

TOOLS: Final = [f"tool_{i:02d}" for i in range(50)]
TOOL_WEIGHTS: Final = [1 / (i + 1) for i in range(50)]
UPSTREAMS: Final = ["payments", "crm", "search", "mail", "files"]
REASONS: Final = [
    "policy_denied",
    "rate_limited",
    "evidence_missing",
    "dependency_missing",
    "budget_exceeded",
    "spend_limited",
]
RULES: Final = [f"rule-{i:02d}" for i in range(20)]
CITIES: Final = ["Oslo", "Lima", "Rome", "Paris", "Tokyo", "Nairobi", "Quito", "Perth", "Dakar", "Hanoi"]
WORDS: Final = [
    "refund",
    "invoice",
    "customer",
    "report",
    "weekly",
    "urgent",
    "shipment",
    "account",
    "draft",
    "summary",
]


KNOWN: dict[str, str] = {}
"""Values taken from the generated data (an order id that exists, a session that exists)."""


def _rows(count: int, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    rng = random.Random(seed)
    step = SPAN / count
    batch: list[dict[str, Any]] = []
    for seq in range(1, count + 1):
        stamp = (START + step * seq).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        roll = rng.random()
        decision = "allow" if roll < 0.85 else "deny" if roll < 0.95 else "require_approval"
        reason = rng.choice(REASONS) if decision == "deny" else None
        arguments = {
            "order_id": f"ORD-{rng.randrange(10**6):06d}",
            "city": rng.choice(CITIES),
            "note": " ".join(rng.choices(WORDS, k=3)),
        }
        if seq == count // 3:
            KNOWN["order_id"] = arguments["order_id"]
        batch.append(
            {
                "seq": seq,
                "id": f"rec-{seq:08d}",
                "timestamp": stamp,
                "created_at": stamp,
                "session_id": f"sess-{rng.randrange(50_000):05d}",
                "agent_id": f"agent-{rng.randrange(100):03d}",
                "tool_name": rng.choices(TOOLS, TOOL_WEIGHTS)[0],
                "tool_input": json.dumps(arguments, separators=(",", ":")),
                "policy_decision": decision,
                "block_reason": reason,
                "matched_rule": rng.choice(RULES) if decision != "allow" or rng.random() < 0.3 else None,
                "record_kind": "tool_call",
                "origin": "mcp",
                "metadata": json.dumps({"upstream": rng.choice(UPSTREAMS)}),
                "flagged_destructive": False,
                "dry_run": False,
                "upstream_latency_ms": round(rng.uniform(1, 200), 3),
                "proxy_compute_ms": round(rng.uniform(0.1, 3), 3),
                "success": decision == "allow",
                "hash": f"{seq:064x}",
                "prev_hash": f"{seq - 1:064x}",
            }
        )
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(store: Store, count: int) -> float:
    started = time.perf_counter()
    columns = [c.name for c in AUDIT_RECORDS.columns]
    for batch in _rows(count):
        if store.dialect == "postgresql":

            def copy(conn: Connection, rows: list[dict[str, Any]] = batch) -> None:
                raw: Any = conn.connection.driver_connection
                names = ", ".join(f'"{c}"' for c in columns)
                with raw.cursor().copy(f"COPY audit_records ({names}) FROM STDIN") as out:
                    for row in rows:
                        out.write_row(
                            [
                                row.get(c, False if c in ("flagged_destructive", "dry_run") else None)
                                for c in columns
                            ]
                        )

            store.submit(copy).result()
        else:
            store.submit(lambda conn, rows=batch: conn.execute(insert(AUDIT_RECORDS), rows)).result()
    analyze = "ANALYZE audit_records" if store.dialect == "postgresql" else "ANALYZE"
    store.submit(lambda conn: conn.exec_driver_sql(analyze)).result()
    return time.perf_counter() - started


def cases(count: int) -> list[tuple[str, ConsoleFilter]]:
    middle = START + SPAN / 2
    return [
        ("no filter", ConsoleFilter()),
        ("time range (1 h, mid-history)", ConsoleFilter(since=middle, until=middle + timedelta(hours=1))),
        ("tool (most used)", ConsoleFilter(tool=TOOLS[0])),
        ("tool (rarest)", ConsoleFilter(tool=TOOLS[-1])),
        ("upstream", ConsoleFilter(upstream="mail")),
        ("decision=deny", ConsoleFilter(decision="deny")),
        ("block reason", ConsoleFilter(reason="budget_exceeded")),
        ("rule", ConsoleFilter(rule="rule-07")),
        ("session", ConsoleFilter(session="sess-04242")),
        ("agent", ConsoleFilter(agent="agent-042")),
        ("text: an order id", ConsoleFilter(q=KNOWN["order_id"])),
        ("text: rare word pair", ConsoleFilter(q="Nairobi urgent")),
        ("text: common word", ConsoleFilter(q="refund")),
        ("text: prefix", ConsoleFilter(q="shipm")),
        (
            "tool + decision + 1 day",
            ConsoleFilter(tool=TOOLS[3], decision="deny", since=middle, until=middle + timedelta(days=1)),
        ),
    ]


def _time(store: Store, where: ConsoleFilter, repeat: int) -> tuple[float, float, float, int]:
    samples: list[float] = []
    second: list[float] = []
    found = 0
    for _ in range(repeat):
        started = time.perf_counter()
        records, cursor = store.read_sync(lambda conn: page(conn, where, limit=100))
        samples.append((time.perf_counter() - started) * 1000)
        found = len(records)
        if cursor is not None:
            started = time.perf_counter()
            store.read_sync(lambda conn, after=cursor: page(conn, where, limit=100, cursor=after))
            second.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples), statistics.median(second) if second else 0.0, found


def run(backend: Backend, count: int, repeat: int) -> list[tuple[str, float, float, float, int]]:
    with (
        tempfile.TemporaryDirectory(prefix="helio-bench-") as directory,
        temporary_store(backend, Path(directory)) as store,
    ):
        seconds = fill(store, count)
        print(f"\n{backend}: filled {count:,} records in {seconds:.0f} s")
        print(f"{'filter':34} {'median ms':>10} {'worst ms':>9} {'page 2 ms':>10} {'rows':>5}")
        results: list[tuple[str, float, float, float, int]] = []
        for name, where in cases(count):
            median, worst, second, found = _time(store, where, repeat)
            flag = "" if worst < TARGET_MS else "  <-- over target"
            print(f"{name:34} {median:10.1f} {worst:9.1f} {second:10.1f} {found:5d}{flag}")
            results.append((name, median, worst, second, found))
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    backends: list[Backend] = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    worst = 0.0
    for backend in backends:
        for _, _, w, _, _ in run(backend, args.rows, args.repeat):
            worst = max(worst, w)
    print(f"\nworst first page over all filters and backends: {worst:.1f} ms (target < {TARGET_MS:.0f} ms)")


if __name__ == "__main__":
    main()
