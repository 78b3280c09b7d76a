"""Proxy cost per call, as a ratio against calling the same upstream directly.

Everything runs in one process and one event loop (upstream, proxy, client), interleaving
direct and proxied rounds, so the noise of a shared machine hits both sides alike.

    uv run python benchmarks/bench_proxy_overhead.py [--calls 2000] [--concurrency 32]
        [--limit none|rate|spend]

The upstream is a minimal JSON-RPC responder (not an MCP SDK server), so the figures isolate the
proxy's own work: ingress checks, parsing, forwarding over a pooled connection, relaying.
``--limit rate`` / ``--limit spend`` put every call under a rate or spend limit (one the calls
never exhaust), so the figures include reserving and committing capacity in the store (SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helio_proxy.transports.downstream.asgi import read_body
from tests.harness import proxy_config, run_proxy, serve_asgi

MAX_BODY = 1 << 20
RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}
TOOLS = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}
"""What ``tools/list`` answers: the proxy checks that a called tool is listed (answering it with
``RESULT`` made every call log a failed refresh)."""


async def upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    request = json.loads(await read_body(receive, MAX_BODY))
    if "id" not in request:  # a notification: accepted, no answer
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    result = TOOLS if request.get("method") == "tools/list" else RESULT
    payload = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": payload})


def call(i: int) -> bytes:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hello", "n": i}},
        }
    ).encode()


HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}

LIMITS = {
    "none": "",
    "rate": (
        "policies:\n  rules:\n    - match: {tool: echo}\n      action: rate_limit\n"
        "      limits: {max_calls: 1000000000, window: 1h, key: tool}\n"
    ),
    "spend": (
        "policies:\n  rules:\n    - match: {tool: echo}\n      action: spend_limit\n"
        "      limits: {max_spend: {field: '$.n', limit: 1000000000000000, currency: GBP, window: 1h}}\n"
    ),
}
"""The policy each ``--limit`` puts the calls under."""


async def sequential(session: aiohttp.ClientSession, url: str, calls: int) -> list[float]:
    latencies: list[float] = []
    for i in range(calls):
        started = time.perf_counter()
        async with session.post(url, data=call(i), headers=HEADERS) as response:
            await response.read()
            assert response.status == 200
        latencies.append(time.perf_counter() - started)
    return latencies


async def throughput(session: aiohttp.ClientSession, url: str, calls: int, concurrency: int) -> float:
    counter = iter(range(calls))

    async def worker() -> None:
        for i in counter:
            async with session.post(url, data=call(i), headers=HEADERS) as response:
                await response.read()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


async def main(calls: int, concurrency: int, rounds: int, limit: str) -> None:
    async with serve_asgi(upstream, lifespan="off") as base:
        direct_url = f"{base}/mcp"
        async with run_proxy(proxy_config(direct_url, LIMITS[limit])) as proxy:
            connector = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(connector=connector) as session:
                await sequential(session, direct_url, 200)  # warm up both paths
                await sequential(session, proxy.mcp_url, 200)
                direct: list[float] = []
                proxied: list[float] = []
                direct_rps: list[float] = []
                proxied_rps: list[float] = []
                for _ in range(rounds):
                    direct += await sequential(session, direct_url, calls // rounds)
                    proxied += await sequential(session, proxy.mcp_url, calls // rounds)
                    direct_rps.append(await throughput(session, direct_url, calls // rounds, concurrency))
                    proxied_rps.append(await throughput(session, proxy.mcp_url, calls // rounds, concurrency))

    def ms(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] * 1000

    d50, p50 = ms(direct, 50), ms(proxied, 50)
    d99, p99 = ms(direct, 99), ms(proxied, 99)
    print(f"sequential calls: {len(direct)} direct, {len(proxied)} through the proxy (limit: {limit})")
    print(f"  p50: direct {d50:.3f} ms, proxied {p50:.3f} ms -> +{p50 - d50:.3f} ms, ratio {p50 / d50:.2f}x")
    print(f"  p99: direct {d99:.3f} ms, proxied {p99:.3f} ms -> +{p99 - d99:.3f} ms, ratio {p99 / d99:.2f}x")
    dr, pr = statistics.median(direct_rps), statistics.median(proxied_rps)
    print(
        f"throughput at {concurrency} connections: direct {dr:,.0f} calls/s, proxied {pr:,.0f} calls/s, ratio {pr / dr:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--limit", choices=sorted(LIMITS), default="none")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.calls, args.concurrency, args.rounds, args.limit))
    except ImportError:
        asyncio.run(main(args.calls, args.concurrency, args.rounds, args.limit))
