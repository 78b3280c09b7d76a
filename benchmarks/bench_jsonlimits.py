"""What the JSON caps cost (helio_proxy.jsonlimits.check): per call on a typical ~200-byte
``tools/call``, next to parsing it, and on the worst 4 MiB bodies (the slow path).

    uv run python benchmarks/bench_jsonlimits.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
import timeit

from helio_proxy import jsonrpc
from helio_proxy.jsonlimits import InputLimitExceeded, check

TYPICAL = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": "refund_order",
            "arguments": {
                "order_id": "A-1001",
                "amount": "25.00",
                "reason": "damaged in transit, photo attached",
            },
        },
    }
).encode()
WORST = {
    "4 MiB nested 2,000,000 deep": b"[" * 2_000_000 + b"]" * 2_000_000,
    "4 MiB of 800,000 short strings": b"[" + b'"ab",' * 800_000 + b"1]",
    "3 MiB in one string": b'["' + b"a" * 3_000_000 + b'"]',
    "4 MiB of escaped quotes, unterminated": b'"' + b'\\"' * 2_000_000,
    "2.6 MB of quote-backslash pairs": b'"\\' * 1_300_000,
    "4 MiB of quotes (2,000,000 empty strings)": b'"' * 4_000_000,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    per_check = timeit.timeit(lambda: check(TYPICAL), number=args.calls) / args.calls * 1e6
    per_parse = timeit.timeit(lambda: jsonrpc.parse(TYPICAL, None), number=args.calls) / args.calls * 1e6
    print(
        f"typical {len(TYPICAL)}-byte tools/call: check {per_check:.2f} us, jsonrpc.parse {per_parse:.2f} us"
    )
    for name, body in WORST.items():
        started = time.perf_counter()
        try:
            check(body)
            outcome = "accepted"
        except InputLimitExceeded as exc:
            outcome = f"refused ({exc.limit})"
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        with contextlib.suppress(ValueError, RecursionError):
            json.loads(body)
        loads = time.perf_counter() - started
        print(f"{name}: check {elapsed * 1e3:.0f} ms, {outcome}; json.loads {loads * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
