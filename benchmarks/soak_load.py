"""Bounded loopback load test (issue 16): a real ``helio start`` under open-loop load, with its
upstream failing in the middle.

    uv run python benchmarks/soak_load.py [--rate 500] [--seconds 60] [--fail-at 25] [--fail-for 10]

* An upstream process (this script with ``--upstream``) answers ``tools/call`` with JSON; told so
  over ``/control`` it answers HTTP 503 for the middle ``--fail-for`` seconds.
* The load generator sends ``tools/call`` at ``--rate`` calls/s for ``--seconds`` seconds,
  open-loop: call *i* is sent at ``start + i / rate`` whether or not earlier ones have been
  answered (late sends are counted), over ``--connections`` keep-alive connections (raw aiohttp,
  JSON-RPC over streamable HTTP, one ``x-helio-session-id`` per connection).
* Checked: every call answered (a result, or ``-32603`` with ``failure_class`` while the upstream
  fails); after a clean stop the audit holds one ``tool_call`` record per call sent; the proxy's
  RSS (``/proc``) at baseline, peak, and 10 s after the load ends.

Prints one JSON summary (also written to ``--json``) and exits 1 when a check fails. Not in the
default sessions: ``uv run nox -s soak``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

CLIENT_TIMEOUT_SECONDS = 300.0
"""How long one call may wait for its answer (pool wait included) before it counts as unanswered."""

RSS_SETTLE_SECONDS = 10.0
"""How long after the load the proxy's RSS is read again (its 'back near baseline' figure)."""


# -- the upstream ----------------------------------------------------------------------------------


def serve_upstream(port: int) -> None:
    failing_until = 0.0

    async def control(request: web.Request) -> web.Response:
        nonlocal failing_until
        failing_until = time.monotonic() + float((await request.json())["fail_for"])
        return web.json_response({"ok": True})

    async def mcp(request: web.Request) -> web.Response:
        message = await request.json()
        request_id = message.get("id")
        if request_id is None:
            return web.Response(status=202)
        if message.get("method") == "tools/call" and time.monotonic() < failing_until:
            return web.Response(status=503, text="overloaded")
        if message.get("method") == "tools/list":
            tool = {"name": "echo", "description": "echo", "inputSchema": {"type": "object"}}
            result: dict[str, Any] = {"tools": [tool]}
        elif message.get("method") == "initialize":
            result = {
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "soak", "version": "1"},
            }
        else:
            text = json.dumps(message.get("params", {}).get("arguments"))
            result = {"content": [{"type": "text", "text": text}], "isError": False}
        return web.json_response({"jsonrpc": "2.0", "id": request_id, "result": result})

    app = web.Application()
    app.router.add_post("/mcp", mcp)
    app.router.add_post("/control", control)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- helpers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listened on {port} within {timeout}s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the load --------------------------------------------------------------------------------------


class Load:
    def __init__(self, url: str, rate: float, seconds: float, connections: int) -> None:
        self.url = url
        self.rate = rate
        self.seconds = seconds
        self.connections = connections
        self.outcomes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.late_sends = 0
        self.sent = 0
        self.drained = 0.0
        """Seconds from the first send to the last answer."""

    async def one(self, session: aiohttp.ClientSession, n: int, agent: str) -> None:
        body = {
            "jsonrpc": "2.0",
            "id": n,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"n": n}},
        }
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "x-helio-session-id": agent,
        }
        started = time.monotonic()
        try:
            async with session.post(self.url, data=json.dumps(body), headers=headers) as response:
                payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            self.outcomes[f"transport_error:{type(exc).__name__}"] += 1
            return
        self.latencies.append(time.monotonic() - started)
        if not isinstance(payload, dict) or payload.get("id") != n:
            self.outcomes["wrong_answer"] += 1
        elif "result" in payload:
            self.outcomes["result"] += 1
        elif failure := (payload.get("error", {}).get("data") or {}).get("failure_class"):
            self.outcomes[f"failure_class:{failure}"] += 1
        else:
            self.outcomes[f"error:{payload.get('error', {}).get('code')}"] += 1

    async def run(self, on_tick: Any) -> float:
        """Send the calls; return the achieved send rate."""
        total = int(self.rate * self.seconds)
        connector = aiohttp.TCPConnector(limit=self.connections, force_close=False)
        # Long enough for an open-loop backlog to drain: every call gets its answer, however late.
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            start = time.monotonic()
            for n in range(total):
                due = start + n / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.05:
                    self.late_sends += 1
                on_tick(time.monotonic() - start)
                task = asyncio.create_task(self.one(session, n, f"agent-{n % self.connections}"))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.sent += 1
            sending = time.monotonic() - start
            while tasks:
                await asyncio.gather(*list(tasks))
            self.drained = time.monotonic() - start
        return self.sent / sending


# -- the run ---------------------------------------------------------------------------------------


def start_processes(
    work: Path, config: Path, upstream_port: int
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], Any]:
    """The upstream and ``helio start`` (its output in ``proxy.log`` under ``work``)."""
    upstream = subprocess.Popen(
        [sys.executable, __file__, "--upstream", str(upstream_port)], stdout=subprocess.DEVNULL
    )
    log = (work / "proxy.log").open("wb")
    proxy = subprocess.Popen(
        [sys.executable, "-m", "helio_proxy", "start", "-c", str(config), "--no-hot-reload"],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return upstream, proxy, log


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="helio-soak-"))
    proxy_port, upstream_port = free_port(), free_port()
    db = work / "audit.db"
    config = work / "helio.yaml"
    config.write_text(
        "version: '1'\n"
        f"upstream:\n  url: 'http://127.0.0.1:{upstream_port}/mcp'\n  request_timeout: 5s\n"
        f"listen:\n  port: {proxy_port}\n"
        f"audit:\n  path: '{db}'\n"
        "dashboard:\n  enabled: false\n"
    )
    upstream, proxy, log = start_processes(work, config, upstream_port)
    try:
        wait_for_port(upstream_port, upstream)
        wait_for_port(proxy_port, proxy)
        url = f"http://127.0.0.1:{proxy_port}/mcp"
        warm = Load(url, 50, 1, 4)
        await warm.run(lambda _: None)
        baseline = rss_mib(proxy.pid)
        peak = baseline
        failed_at: float | None = None

        async with aiohttp.ClientSession() as control:

            async def fail_upstream() -> None:
                async with control.post(
                    f"http://127.0.0.1:{upstream_port}/control", json={"fail_for": args.fail_for}
                ):
                    pass

            pending: list[asyncio.Task[None]] = []

            def tick(elapsed: float) -> None:
                nonlocal failed_at, peak
                if failed_at is None and elapsed >= args.fail_at:
                    failed_at = elapsed
                    pending.append(asyncio.create_task(fail_upstream()))
                if int(elapsed * 10) % 5 == 0:
                    peak = max(peak, rss_mib(proxy.pid))

            load = Load(url, args.rate, args.seconds, args.connections)
            achieved = await load.run(tick)
            await asyncio.gather(*pending)
        peak = max(peak, rss_mib(proxy.pid))
        await asyncio.sleep(RSS_SETTLE_SECONDS)
        settled = rss_mib(proxy.pid)
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=60)
        with sqlite3.connect(db) as conn:
            recorded = conn.execute(
                "SELECT count(*) FROM audit_records WHERE record_kind = 'tool_call'"
            ).fetchone()[0]
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        latencies = sorted(load.latencies)

        def pct(q: float) -> float | None:
            return round(latencies[int(q * (len(latencies) - 1))] * 1000, 1) if latencies else None

        answered = sum(
            n for key, n in load.outcomes.items() if key == "result" or key.startswith("failure_class:")
        )
        sent_total = load.sent + warm.sent
        return {
            "target_rate": args.rate,
            "achieved_send_rate": round(achieved, 1),
            "served_rate": round(answered / load.drained, 1) if load.drained else None,
            "drained_seconds": round(load.drained, 1),
            "late_sends": load.late_sends,
            "seconds": args.seconds,
            "sent": load.sent,
            "outcomes": dict(load.outcomes),
            "answered": answered,
            "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
            "audit_tool_call_records": recorded,
            "calls_sent_including_warmup": sent_total,
            "integrity_check": integrity,
            "rss_mib": {"baseline": round(baseline, 1), "peak": round(peak, 1), "after": round(settled, 1)},
            "proxy_exit_code": proxy.returncode,
            "work_dir": str(work),
        }
    finally:
        for process in (proxy, upstream):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=20)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fail-at", type=float, default=25.0)
    parser.add_argument("--fail-for", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rss-growth-ceiling", type=float, default=1.5, help="after/baseline RSS ratio allowed"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.upstream is not None:
        serve_upstream(args.upstream)
        return
    summary = asyncio.run(soak(args))
    problems = []
    if summary["answered"] != summary["sent"]:
        problems.append("not every call was answered with a result or a failure_class")
    if summary["audit_tool_call_records"] != summary["calls_sent_including_warmup"]:
        problems.append("audit records != calls sent")
    if summary["integrity_check"] != "ok":
        problems.append("database integrity check failed")
    rss = summary["rss_mib"]
    if rss["after"] > rss["baseline"] * args.rss_growth_ceiling:
        problems.append(f"RSS did not come back near its baseline (ceiling x{args.rss_growth_ceiling})")
    summary["problems"] = problems
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
