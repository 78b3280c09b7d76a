"""``helio policy replay`` throughput: recorded calls decided again per second, store reads included.

    uv run python benchmarks/bench_policy_replay.py [--records 50000] [--repeat 3]

Seeds a SQLite store with ``--records`` realistic ``tool_call`` records (arguments of a few
fields, a mix of tools and decisions, one hour apart at most) and replays them with a config of
twelve rules (tool globs, annotation matchers, JSONPath input conditions, a gate), through the
same function the command runs (:func:`helio_proxy.cli.replay.replay`): reading the window in
pages, decoding each record's arguments, deciding. The figure is the best of ``--repeat`` runs,
and the decide-only rate (no store) beside it for scale.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from helio_proxy.audit.chain import append_rows
from helio_proxy.audit.records import ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.cli.replay import _pages, replay  # pyright: ignore[reportPrivateUsage]
from helio_proxy.config import LoadedConfig, parse_config_text
from helio_proxy.store import create_store

CONFIG = """version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
dashboard: {enabled: false}
audit: {path: 'DB'}
policies:
  default: allow
  rules:
    - {name: no-deletes, match: {tool: 'delete_*'}, action: deny}
    - {name: destructive, match: {annotations: {destructiveHint: true}}, action: deny}
    - {name: big-refunds, match: {tool: refund, input: {'$.amount': {gt: 500}}}, action: deny}
    - {name: eu-payments, match: {tool: create_payment, input: {'$.currency': {in: [EUR, CHF]}}}, action: dry_run}
    - {name: big-payments, match: {tool: create_payment, input: {'$.amount': {gt: LIMIT}}}, action: deny}
    - {name: vip, match: {tool: 'send_*', input: {'$.to': {contains: '@vip.example'}}}, action: deny}
    - {name: admin-tools, match: {tool: 'admin.*'}, action: deny}
    - {name: github-writes, match: {tool: 'github.{create,update}_*'}, action: deny}
    - {name: reads, match: {annotations: {readOnlyHint: true}}, action: allow}
    - {name: refund-gate, match: {tool: issue_refund}, requires: [lookup_order]}
    - {name: search, match: {tool: 'search_*'}, action: allow}
    - {name: weather, match: {tool: get_weather}, action: allow}
"""
TOOLS = [
    "get_weather",
    "search_docs",
    "create_payment",
    "send_email",
    "refund",
    "lookup_order",
    "delete_user",
]


def _record(i: int, at: datetime) -> ToolCallRecord:
    tool = TOOLS[i % len(TOOLS)]
    arguments: dict[str, object] = {
        "amount": (i * 37) % 2000,
        "currency": ["GBP", "EUR", "USD"][i % 3],
        "to": f"user{i % 50}@example.com",
        "note": "quarterly settlement",
    }
    return ToolCallRecord(
        timestamp=at,
        tool_name=tool,
        tool_input=arguments,
        policy_decision="allow",
        session_id=f"s{i % 97}",
    )


def seed(db: Path, count: int) -> None:
    builder = RowBuilder(Redactor())
    now = datetime.now(UTC)
    store = create_store(f"sqlite:///{db}")
    store.open_sync()
    try:
        for start in range(0, count, 5000):
            rows = [
                builder.build(_record(i, now - timedelta(seconds=count - i)), "c" * 64)
                for i in range(start, min(count, start + 5000))
            ]
            store.submit(lambda conn, rows=rows: append_rows(conn, rows, signer=None)).result(timeout=120)
    finally:
        store.close_sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="helio-replay-bench-") as tmp:
        db = Path(tmp) / "audit.db"
        print(f"seeding {args.records} tool_call records ...", flush=True)
        seed(db, args.records)
        text = CONFIG.replace("DB", str(db)).replace("LIMIT", "1000")
        config = parse_config_text(text, source="bench.yaml")
        loaded = LoadedConfig(
            config=config,
            path=Path("bench.yaml"),
            sha256=hashlib.sha256(text.encode()).hexdigest(),
            warnings=[],
        )
        store = create_store(f"sqlite:///{db}")
        store.open_sync()
        try:
            until = datetime.now(UTC) + timedelta(seconds=1)
            since = until - timedelta(days=1)
            best = 0.0
            calls = 0
            for _ in range(args.repeat):
                report = replay(loaded, store, since, until)
                calls = report.calls
                best = max(best, report.rate)
            pages = list(_pages(store, since, until))
            decide_only = 0.0
            for _ in range(args.repeat):
                started = time.perf_counter()
                replay(loaded, store, since, until, rows=pages)
                decide_only = max(decide_only, calls / (time.perf_counter() - started))
        finally:
            store.close_sync()
    print(f"replayed {calls} calls: {best:,.0f} calls/s (store reads included, best of {args.repeat})")
    print(f"decide only (rows already read): {decide_only:,.0f} calls/s (best of {args.repeat})")
    print(f"target >= 10,000 calls/s: {'met' if best >= 10_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
