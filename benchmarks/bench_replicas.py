"""Three replicas behind nginx against one, and what PostgreSQL-backed session state adds to a
governed call.

    uv run python benchmarks/bench_replicas.py [--calls 3000] [--concurrency 32] [--latency-calls 1000]

The layout of docs/deployment.md (tests/e2e/replicas.py starts it): ``helio start`` replicas of
examples/deployment/helio.yaml on one PostgreSQL (a throwaway schema of
``HELIO_TEST_POSTGRES_URL``), Debian's nginx in front with examples/deployment/nginx.conf. The
upstream is a minimal JSON-RPC responder in its own process (this script with
``--serve-upstream PORT``), so the figures are the proxies' work, not an MCP SDK server's.

The call measured is a governed one: ``send_email`` under the config's ``requires: [lookup_order]``
gate, in a session whose ``lookup_order`` already ran, so each call reads the session's state
(one ``SELECT`` of its row), decides, forwards, and records the completed call (one write).
Each load connection has its own session (``x-helio-session-id``).

* latency: sequential calls over one connection, p50/p99, straight to the upstream, to one
  replica with ``store.session_state: store`` (PostgreSQL) and to one with ``memory``;
* throughput: ``--concurrency`` connections through nginx to three replicas, through the same
  nginx config with its three servers all pointing at one replica, and straight to one replica.

Every process (the load generator too) shares the machine's cores, so on a small machine three
replicas cannot add throughput: what they add there is surviving the loss of one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helio_proxy.store.testing import postgres_schema
from tests.e2e.conftest import free_port, wait_for_port
from tests.e2e.replicas import (
    CONFIG,
    NAMES,
    Cluster,
    Replica,
    nginx_in_front,
    replica_env,
    start_replica,
    wait_for_replicas,
)

TOOLS = [
    {"name": name, "description": f"{name} (benchmark)", "inputSchema": {"type": "object"}}
    for name in ("lookup_order", "send_email", "refund_order", "create_payment", "delete_user", "get_weather")
]
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def serve_upstream(port: int) -> None:
    """A minimal MCP server over streamable HTTP (JSON answers, stateless): enough for the proxy."""
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body) if body else {}
        if "id" not in request:
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        method = request.get("method")
        if method == "initialize":
            result: dict[str, Any] = {
                "protocolVersion": request["params"].get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench-upstream", "version": "1"},
            }
        elif method == "tools/list":
            result = {"tools": TOOLS}
        else:
            result = {"content": [{"type": "text", "text": "ok"}], "isError": False}
        payload = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_keep_alive=600,
    )


def call(n: int, tool: str) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": tool, "arguments": {"n": n}}}
    ).encode()


async def post(http: aiohttp.ClientSession, url: str, session: str, n: int, tool: str) -> None:
    headers = {**HEADERS, "x-helio-session-id": session}
    async with http.post(url, data=call(n, tool), headers=headers) as response:
        body = await response.read()
        assert response.status == 200, body
        if b'"error"' in body:
            raise AssertionError(f"{tool} was refused: {body[:300]!r}")


async def sequential(url: str, calls: int, session: str) -> list[float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
        await post(http, url, session, 0, "lookup_order")
        for n in range(50):  # warm up
            await post(http, url, session, n, "send_email")
        samples: list[float] = []
        for n in range(calls):
            started = time.perf_counter()
            await post(http, url, session, n, "send_email")
            samples.append(time.perf_counter() - started)
    return samples


async def throughput(url: str, calls: int, concurrency: int, label: str) -> float:
    sessions = [f"bench-{label}-{n}" for n in range(concurrency)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        await asyncio.gather(*(post(http, url, s, 0, "lookup_order") for s in sessions))
        counter = iter(range(calls))

        async def worker(session: str) -> None:
            for n in counter:
                await post(http, url, session, n, "send_email")

        await asyncio.gather(*(post(http, url, s, 1, "send_email") for s in sessions))  # warm up
        started = time.perf_counter()
        await asyncio.gather(*(worker(s) for s in sessions))
        return calls / (time.perf_counter() - started)


def ms(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] * 1000


async def measure(
    upstream_url: str, store: Replica, memory: Replica, three: Cluster, one: Cluster, args: argparse.Namespace
) -> None:
    load_before = os.getloadavg()[0]
    mcp = f"http://127.0.0.1:{store.ports['mcp']}/mcp"
    targets = {
        "upstream, direct": upstream_url,
        "one replica, session state in PostgreSQL": mcp,
        "one replica, session state in memory": f"http://127.0.0.1:{memory.ports['mcp']}/mcp",
    }
    latency: dict[str, list[float]] = {label: [] for label in targets}
    for round_ in range(args.rounds):  # interleaved, so the machine's noise hits each alike
        for label, target in targets.items():
            latency[label] += await sequential(
                target, args.latency_calls // args.rounds, f"lat-{label}-{round_}"
            )
    base = statistics.median(latency["upstream, direct"]) * 1000
    print(f"load average before: {load_before:.1f} (1 min) on {os.cpu_count()} cores")
    print(f"latency, {args.latency_calls} sequential governed calls (send_email behind a requires gate):")
    for label, samples in latency.items():
        added = "" if label.startswith("upstream") else f"  (+{ms(samples, 50) - base:.2f} ms at p50)"
        print(f"  {label:44s} p50 {ms(samples, 50):6.2f} ms  p99 {ms(samples, 99):6.2f} ms{added}")

    rates: dict[str, list[float]] = {
        "nginx -> three replicas": [],
        "nginx -> one replica": [],
        "one replica": [],
    }
    for round_ in range(args.rounds):
        rates["nginx -> three replicas"].append(
            await throughput(three.mcp_url, args.calls, args.concurrency, f"three-{round_}")
        )
        rates["nginx -> one replica"].append(
            await throughput(one.mcp_url, args.calls, args.concurrency, f"one-{round_}")
        )
        rates["one replica"].append(await throughput(mcp, args.calls, args.concurrency, f"direct-{round_}"))
    print(
        f"throughput, {args.calls} governed calls x {args.rounds} rounds at {args.concurrency} connections:"
    )
    one_rate = statistics.median(rates["nginx -> one replica"])
    for label, values in rates.items():
        rate = statistics.median(values)
        print(
            f"  {label:28s} {rate:7,.0f} calls/s (median; rounds {', '.join(f'{v:,.0f}' for v in values)})"
            f"  ratio to nginx -> one: {rate / one_rate:.2f}"
        )


def main(args: argparse.Namespace) -> None:
    import subprocess

    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="helio-bench-replicas-")))
        url = stack.enter_context(postgres_schema())
        port = free_port()
        upstream = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(port)])
        stack.callback(upstream.wait, 10)
        stack.callback(upstream.terminate)
        wait_for_port(port, upstream)
        upstream_url = f"http://127.0.0.1:{port}/mcp"
        env = replica_env(url, upstream_url)
        memory_config = directory / "helio-memory.yaml"
        memory_config.write_text(CONFIG.read_text().replace("session_state: store", "session_state: memory"))
        three = Cluster(
            url, env, {k: free_port() for k in ("mcp", "operator", "sideband")}, [], directory / "n3"
        )
        stack.callback(three.stop_replicas)
        three.replicas.extend(start_replica(directory, name, env, stack) for name in NAMES)
        memory = start_replica(directory, "memory", env, stack, memory_config)
        stack.callback(lambda: Cluster(url, env, {}, [memory], directory).stop_replicas())
        wait_for_replicas([*three.replicas, memory])
        first = three.replicas[0]
        one = Cluster(
            url,
            env,
            {k: free_port() for k in ("mcp", "operator", "sideband")},
            [Replica(name, first.ports, first.process, first.log) for name in NAMES],
            directory / "n1",
        )
        stack.enter_context(nginx_in_front(three))
        stack.enter_context(nginx_in_front(one))
        print(
            f"replicas up: {', '.join(r.name for r in three.replicas)} + memory; nginx for three and for one"
        )
        asyncio.run(measure(upstream_url, first, memory, three, one, args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-calls", type=int, default=1000)
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_upstream:
        serve_upstream(options.serve_upstream)
    else:
        main(options)
