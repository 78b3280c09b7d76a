"""The audit writer thread's per-record CPU: building a row, hashing it, scrubbing, serializing.

    uv run python benchmarks/bench_audit_rows.py [--number 20000] [--repeat 7]

This work runs on the writer thread but holds the GIL the event loop needs, so every microsecond
here is taken from the proxy under load. Two records are timed: a typical ``tools/call`` (short
arguments, a one-text-item result, a request id) and one with secrets and card numbers to redact
(which takes the redaction walk). Figures are the best of ``--repeat`` runs, in µs per operation.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from helio_proxy.audit.chain import GENESIS_HASH, record_hash
from helio_proxy.audit.records import ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder, dump_json

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CREATED = "2026-03-01T12:00:01.000000Z"


def _typical() -> ToolCallRecord:
    return ToolCallRecord(
        timestamp=NOW,
        session_id="s-1",
        agent_id="agent",
        tool_name="echo",
        tool_input={"text": "hello", "n": 7},
        upstream_response={
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"content": [{"type": "text", "text": "ok"}], "isError": False},
        },
        metadata={"request_id": 1},
        upstream_latency_ms=1.234,
        total_duration_ms=2.5,
        proxy_compute_ms=0.125,
        success=True,
    )


def _secrets() -> ToolCallRecord:
    return ToolCallRecord(
        timestamp=NOW,
        session_id="s-1",
        agent_id="agent",
        tool_name="charge",
        tool_input={"api_key": "sk-live-abc", "card": "4111 1111 1111 1111", "amount": 12.5},
        upstream_response={
            "jsonrpc": "2.0",
            "id": 1,
            "result": {
                "content": [{"type": "text", "text": "Authorization: Bearer abc charged 4111111111111111"}],
                "isError": False,
            },
        },
        metadata={"request_id": 1},
        upstream_latency_ms=1.234,
        total_duration_ms=2.5,
        success=True,
    )


def _time(operation: Callable[[], Any], number: int, repeat: int) -> float:
    return min(timeit.repeat(operation, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    redactor = Redactor()
    builder = RowBuilder(redactor)
    for label, record in (("typical", _typical()), ("secrets", _secrets())):
        row = builder.build(record, CREATED)
        row.update(seq=1, prev_hash=GENESIS_HASH)
        response = record.upstream_response
        figures = {
            "build": _time(lambda record=record: builder.build(record, CREATED), args.number, args.repeat),
            "record_hash": _time(lambda row=row: record_hash(row), args.number, args.repeat),
            "scrub(response)": _time(lambda r=response: redactor.scrub(r), args.number, args.repeat),
            "dump_json(response)": _time(lambda r=response: dump_json(r), args.number, args.repeat),
        }
        print(f"{label:8}", "  ".join(f"{name} {value:6.2f} µs" for name, value in figures.items()))


if __name__ == "__main__":
    main()
