"""How Helio's cost grows: with charges in a limit's window, and with open sessions.

    uv run python benchmarks/bench_scale.py [--part limits,limits-start,sessions] [--sliding] [--gate-gap-ms 1] [--json out.json]

``limits`` (in one process, one event loop: client, three proxies; the upstream is the raw
JSON-RPC server of ``bench_compare.py`` in its own process). Three proxies on one upstream, the
same call through each, interleaved: one with no limit, one where the call falls under a
``rate_limit`` rule, one under a ``spend_limit`` rule (limits the calls never exhaust). Before
measuring, the rate and spend buckets are filled with 10 or 100,000 charges inside the window
(rows written straight into the store, spread over the last 50 minutes of a 1 h window, so none
ages out while measuring). ``--sliding`` measures the steady state of a busy bucket instead: 1 m
windows, the charges spread over the whole minute, so every call takes off the charges that aged
out since the one before (about 1.7 per call at 100,000 charges and 1 ms per call). The
figures: each proxy's c=1 p50/p99, and what the limit rule adds over the no-limit proxy, on SQLite
and on PostgreSQL (``HELIO_TEST_POSTGRES_URL``, a throwaway schema). Also timed: the gate itself
(``LimitsGate.reserve`` + commit) for a call under the rule, and for a call no limit rule matches
(which must not touch the store); back to back, or ``--gate-gap-ms`` apart with the loop idle in
between, as a proxy's calls are (on this project's VM a PostgreSQL round trip after an idle
millisecond costs more than one right after the last).

``limits-start``: the same three cases through ``helio start`` processes instead (the 20-rule
config of ``bench_compare.py`` with the limit rule first, each proxy with the audit writer
``audit.writer: auto`` gives it: a process on a machine with two CPUs), fresh buckets, called in
turn; with the number of calls over 2 ms. A limited call that finds the audit writer committing
a batch waits for its write lock (SQLite), which is what the p99 shows.

``sessions``: ``helio start`` (the 20-rule config of ``bench_compare.py``) in its own process; 1,
100 and 1,000 sessions are opened (each its own ``x-helio-session-id`` and keep-alive connection,
each having made a ``tools/call``) and kept open; then the proxy's resident memory (VmRSS) and the
c=1 latency of further calls are read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import Connection, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_compare  # noqa: E402  (the upstream, the 20-rule config, the handshake)

from helio_proxy.store.base import time_text  # noqa: E402
from helio_proxy.store.testing import postgres_schema  # noqa: E402
from tests.harness import proxy_config, run_proxy  # noqa: E402

HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
RULES = {
    "none": "",
    "rate": (
        "policies:\n  rules:\n    - {name: calls, match: {tool: echo}, action: rate_limit,\n"
        "       limits: {max_calls: 1000000000, window: 1h, key: tool}}\n"
    ),
    "spend": (
        "policies:\n  rules:\n    - {name: spend, match: {tool: echo}, action: spend_limit,\n"
        "       limits: {max_spend: {field: '$.n', limit: 1000000000000, currency: GBP, window: 1h}}}\n"
    ),
}

FILL_SECONDS = 3000.0
"""The charges are spread over this many seconds before now: the last 50 minutes of the 1 h
window, so none ages out while measuring; ``--sliding`` makes the window 1 minute and spreads
them over all of it, so charges age out continuously (the steady state of a busy bucket)."""


def sliding() -> None:
    global FILL_SECONDS
    for name in ("rate", "spend"):
        RULES[name] = RULES[name].replace("window: 1h", "window: 1m")
    FILL_SECONDS = 60.0


def ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def body(i: int) -> bytes:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hello", "n": 7}},
        }
    ).encode()


async def timed(session: aiohttp.ClientSession, url: str, i: int, headers: dict[str, str] = HEADERS) -> float:
    started = time.perf_counter()
    async with session.post(url, data=body(i), headers=headers) as response:
        payload = await response.read()
    if response.status != 200 or b'"result"' not in payload:
        raise RuntimeError(f"{url} answered {response.status}: {payload[:200]!r}")
    return time.perf_counter() - started


def spawn_upstream() -> tuple[subprocess.Popen[bytes], str]:
    port = bench_compare.free_port()
    process = subprocess.Popen(
        [sys.executable, bench_compare.__file__, "upstream", "--port", str(port)], start_new_session=True
    )
    bench_compare.wait_port(port, process, 30)
    return process, f"http://127.0.0.1:{port}/mcp"


# -- limits -----------------------------------------------------------------------------------


def fill(conn: Connection, charges: int, now: datetime, kind: str = "") -> int:
    """Give every bucket (of ``kind``) ``charges`` charges inside its 1 h window (totals summed once, on next use)."""
    keys = [
        str(k)
        for (k,) in conn.execute(
            text("SELECT bucket_key FROM limit_buckets WHERE kind LIKE :k"), {"k": kind + "%"}
        )
    ]
    for key in keys:
        conn.execute(text("DELETE FROM limit_events WHERE bucket_key = :k"), {"k": key})
        rows = [
            {
                "id": uuid.uuid4().hex,
                "key": key,
                "amount": "7",
                "at": time_text(now - timedelta(seconds=FILL_SECONDS * (charges - i) / charges)),
            }
            for i in range(charges)
        ]
        for start in range(0, len(rows), 5000):
            conn.execute(
                text(
                    "INSERT INTO limit_events (id, bucket_key, amount, occurred_at) VALUES (:id, :key, :amount, :at)"
                ),
                rows[start : start + 5000],
            )
        conn.execute(
            text("UPDATE limit_buckets SET charge_total = NULL, charge_count = NULL WHERE bucket_key = :k"),
            {"k": key},
        )
    return len(keys)


async def limits_case(upstream: str, backend: str, charges: int, calls: int, rounds: int) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        apps: dict[str, Any] = {}
        for name, rules in RULES.items():
            if backend == "postgres":
                url = stack.enter_context(postgres_schema())
                extra = f"store:\n  url: '{url}'\n" + rules
            else:
                extra = rules
            app = await stack.enter_async_context(run_proxy(proxy_config(upstream, extra)))
            urls[name], apps[name] = app.mcp_url, app
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(urls)))
        )
        for url in urls.values():  # create the buckets
            await timed(session, url, 0)
        now = datetime.now(UTC)
        for name in ("rate", "spend"):
            store = apps[name].audit.store
            filled = await store.write(lambda conn: fill(conn, charges, now))
            assert filled == 1, f"{name}: {filled} buckets"
        for url in urls.values():  # warm up (the first use sums the filled rows once)
            for i in range(100):
                await timed(session, url, i)
        samples: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(rounds):
            for name, url in urls.items():
                for i in range(calls):
                    samples[name].append(await timed(session, url, i))
        held = {}
        for name in ("rate", "spend"):
            store = apps[name].audit.store
            held[name] = await store.read(
                lambda conn: conn.execute(text("SELECT charge_count FROM limit_buckets")).scalar()
            )
    out: dict[str, Any] = {"backend": backend, "charges_in_window": charges, "held_after": held}
    for name, values in samples.items():
        out[name] = {"p50_ms": ms(values, 50), "p99_ms": ms(values, 99), "calls": len(values)}
    for name in ("rate", "spend"):
        out[name]["added_p50_ms"] = out[name]["p50_ms"] - out["none"]["p50_ms"]
        out[name]["added_p99_ms"] = out[name]["p99_ms"] - out["none"]["p99_ms"]
    return out


START_RULES = {
    "rate": "    - {name: calls, match: {tool: echo}, action: rate_limit,"
    " limits: {max_calls: 1000000000, window: 1h, key: tool}}\n",
    "spend": "    - {name: spend, match: {tool: echo}, action: spend_limit,"
    " limits: {max_spend: {field: '$.n', limit: 1000000000000, currency: GBP, window: 1h}}}\n",
}
"""``limits-start``: the limit rules of :data:`RULES`, put first in the 20-rule config of
``bench_compare.py``."""


async def limits_start_case(upstream: str, backend: str, calls: int, rounds: int) -> dict[str, Any]:
    """Three ``helio start`` processes (the 20-rule config; none, a ``rate_limit`` rule, a
    ``spend_limit`` rule on the called tool), each with the audit writer ``auto`` gives it, called
    in turn, ``calls`` sequential calls each per round."""
    helio = str(Path(sys.executable).parent / "helio")
    samples: dict[str, list[float]] = {"none": [], "rate": [], "spend": []}
    with contextlib.ExitStack() as files:
        async with AsyncExitStack() as stack:
            urls: dict[str, str] = {}
            for name in samples:
                workdir = Path(files.enter_context(tempfile.TemporaryDirectory(prefix="helio-scale-")))
                port = bench_compare.free_port()
                config = bench_compare.helio_config(upstream, port, workdir)
                text_ = config.read_text()
                if name != "none":
                    text_ = text_.replace("  rules:\n", "  rules:\n" + START_RULES[name], 1)
                if backend == "postgres":
                    url = files.enter_context(postgres_schema())
                    text_ = text_.replace("audit:\n", f"store:\n  url: '{url}'\naudit:\n", 1)
                config.write_text(text_)
                log = files.enter_context((workdir / "helio.log").open("wb"))
                argv = [helio, "start", "-c", str(config), "--no-hot-reload"]
                proc = subprocess.Popen(argv, stdout=log, stderr=log)  # noqa: ASYNC220 - before measuring
                stack.callback(proc.wait, 20)
                stack.callback(proc.terminate)
                bench_compare.wait_port(port, proc, 60)
                urls[name] = f"http://127.0.0.1:{port}/mcp"
                await bench_compare.handshake(urls[name])
            sessions = {
                name: await stack.enter_async_context(
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
                )
                for name in urls
            }
            for name, url in urls.items():  # warm up
                for i in range(100):
                    await timed(sessions[name], url, i)
            for _ in range(rounds):
                for name, url in urls.items():
                    for i in range(calls):
                        samples[name].append(await timed(sessions[name], url, i))
    out: dict[str, Any] = {"backend": backend}
    for name, values in samples.items():
        out[name] = {
            "p50_ms": ms(values, 50),
            "p99_ms": ms(values, 99),
            "over_2ms": sum(1 for v in values if v > 0.002),
            "calls": len(values),
        }
    for name in ("rate", "spend"):
        out[name]["added_p50_ms"] = out[name]["p50_ms"] - out["none"]["p50_ms"]
        out[name]["added_p99_ms"] = out[name]["p99_ms"] - out["none"]["p99_ms"]
    return out


async def gate_case(backend: str, charges: int, iterations: int, gap: float = 0.0) -> dict[str, Any]:
    """``LimitsGate.reserve`` + commit alone, for a call under the rule and for one no rule matches
    (``gap``: seconds the loop waits, untimed, before each timed call)."""
    from helio_proxy.audit.clock import ManualClock
    from helio_proxy.config import parse_config_text
    from helio_proxy.gateway.enforcement import GovernedCall
    from helio_proxy.limits import LimitsGate
    from helio_proxy.policy import Allow, compile_policy
    from helio_proxy.policy.facts import CallFacts
    from helio_proxy.session.identity import SessionIdentity
    from helio_proxy.store import create_store

    base = "version: '1'\nupstream: {url: 'http://127.0.0.1:9/mcp'}\ndashboard: {enabled: false}\n"
    out: dict[str, Any] = {"backend": backend, "charges_in_window": charges}
    with tempfile.TemporaryDirectory() as tmp, AsyncExitStackSync(backend) as url_or_none:
        for kind in ("rate", "spend", "unmatched"):
            store = create_store(url_or_none or f"sqlite:///{tmp}/{kind}.db")
            await store.open()
            try:
                config = parse_config_text(base + RULES["rate" if kind == "unmatched" else kind], env={})
                policy = compile_policy(config)
                clock = ManualClock(datetime.now(UTC))
                gate = LimitsGate(store, lambda config=config: config, clock=clock.now)
                await gate.start()
                tool = "other" if kind == "unmatched" else "echo"
                raw = json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "tools/call",
                        "params": {"name": tool, "arguments": {"n": 7}},
                    }
                ).encode()
                call = GovernedCall(
                    facts=CallFacts(tool, {"n": 7}, session_id="s"),
                    identity=SessionIdentity("s", "header"),
                    request_id=1,
                    raw=raw,
                )
                decision = policy.decide(call.facts)

                async def once(decision: Any = decision, call: Any = call, gate: Any = gate) -> None:
                    settlement = await gate.reserve(decision, call)
                    assert isinstance(settlement.decision, Allow)
                    await settlement.delivered()

                await once()
                if kind != "unmatched":
                    moment = clock.now()
                    await store.write(
                        lambda conn, kind=kind, moment=moment: fill(conn, charges, moment, kind)
                    )
                for _ in range(50):
                    clock.advance(0.001)
                    await once()
                values: list[float] = []
                for _ in range(iterations):
                    clock.advance(0.001)
                    if gap:
                        await asyncio.sleep(gap)
                    started = time.perf_counter()
                    await once()
                    values.append(time.perf_counter() - started)
                statements, round_trips = await count_statements(store, once)
                out[kind] = {
                    "p50_ms": ms(values, 50),
                    "p99_ms": ms(values, 99),
                    "statements": statements,
                    "round_trips": round_trips,
                }
                await gate.stop()
            finally:
                await store.close()
    return out


async def count_statements(store: Any, once: Callable[[], Awaitable[None]]) -> tuple[int, int | None]:
    """The SQL statements one ``once()`` sends from the store's writer (or the loop's own
    connection), and on PostgreSQL the round trips to the server (``None`` on SQLite: in process).

    Both backends' hot-path statements go to the driver directly (``limits/ledger.py``), past
    SQLAlchemy's events, so the driver itself is traced: ``sqlite3``'s trace callback, and on
    PostgreSQL libpq's protocol trace of the writer's and the loop's connections (a statement is an ``Execute``
    or a simple ``Query``; a round trip ends at each ``Sync`` or ``Query``)."""
    seen: list[str] = []

    def trace(on: bool) -> Callable[[Any], None]:
        def job(conn: Any) -> None:
            conn.connection.driver_connection.set_trace_callback(seen.append if on else None)

        return job

    skip = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")
    if store.engine.dialect.name == "sqlite":
        # A reservation may also run on the event loop's own connection (SqliteStore.write_short),
        # opened by the gate's first call (the timed calls above made it): trace that one too.
        now = getattr(store, "_now", None)
        await store.write(trace(True))
        if now is not None:
            trace(True)(now)
        try:
            await once()
        finally:
            await store.write(trace(False))
            if now is not None:
                trace(False)(now)
        return len([s for s in seen if not s.lstrip().upper().startswith(skip)]), None
    import psycopg

    writer = await store.write(lambda conn: conn.connection.driver_connection)
    # A one-statement reservation is sent from the event loop's own connection
    # (PostgresStore.write_statement), opened by the gate's first call: trace that one too.
    connections = [c for c in (writer, getattr(store, "_loop_conn", None)) if c is not None]
    sent: list[list[str]] = []
    with tempfile.TemporaryDirectory() as directory:
        paths = [Path(directory) / f"{i}.trace" for i in range(len(connections))]
        for conn, path in zip(connections, paths, strict=True):
            conn.pgconn.trace(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            await once()
        finally:
            for conn in connections:
                conn.pgconn.untrace()
        for path in paths:
            sent += [line.split("\t") for line in path.read_text().splitlines() if line.startswith("F")]
    statements = [
        m
        for m in sent
        if m[2] == "Execute" or (m[2] == "Query" and skip[0] not in m[3] and skip[1] not in m[3])
    ]
    trips = [m for m in sent if m[2] in ("Sync", "Query")]
    return len(statements), len(trips)


class AsyncExitStackSync:
    """A PostgreSQL schema for ``postgres``, nothing for ``sqlite``."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._cm: Any = None

    def __enter__(self) -> str | None:
        if self.backend != "postgres":
            return None
        self._cm = postgres_schema()
        return self._cm.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)


# -- sessions ---------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def sessions_part(counts: list[int], calls: int) -> list[dict[str, Any]]:
    upstream_proc, upstream = spawn_upstream()
    workdir = Path(tempfile.mkdtemp(prefix="helio-scale-"))
    port = bench_compare.free_port()
    config = bench_compare.helio_config(upstream, port, workdir)
    helio = str(Path(sys.executable).parent / "helio")
    log = (workdir / "helio.log").open("wb")
    argv = [helio, "start", "-c", str(config), "--no-hot-reload"]
    proxy = subprocess.Popen(argv, stdout=log, stderr=log)  # noqa: ASYNC220 - started once, before measuring
    results: list[dict[str, Any]] = []
    try:
        bench_compare.wait_port(port, proxy, 60)
        url = f"http://127.0.0.1:{port}/mcp"
        await bench_compare.handshake(url)
        opened: list[aiohttp.ClientSession] = []
        probe = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        for i in range(100):
            await timed(probe, url, i)
        baseline_rss = rss_mib(proxy.pid)
        for count in counts:
            while len(opened) < count:
                client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
                headers = {**HEADERS, "x-helio-session-id": f"bench-session-{len(opened)}"}
                await timed(client, url, len(opened), headers)
                opened.append(client)
            await asyncio.sleep(0.5)
            values = [
                await timed(probe, url, i, {**HEADERS, "x-helio-session-id": "probe"}) for i in range(calls)
            ]
            results.append(
                {
                    "open_sessions": count,
                    "rss_mib": rss_mib(proxy.pid),
                    "rss_before_sessions_mib": baseline_rss,
                    "p50_ms": ms(values, 50),
                    "p99_ms": ms(values, 99),
                }
            )
            print(f"  {count:>5} open sessions: RSS {results[-1]['rss_mib']:.1f} MiB", file=sys.stderr)
        for client in opened:
            await client.close()
        await probe.close()
    finally:
        proxy.terminate()
        proxy.wait(timeout=20)
        log.close()
        bench_compare.stop(bench_compare.Target("upstream", "", processes=[upstream_proc]))
    return results


async def main(args: argparse.Namespace) -> dict[str, Any]:
    parts = set(args.part.split(","))
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "limits_window": "1m, charges spread over all of it"
        if FILL_SECONDS < 3000
        else "1h, charges in its last 50 min",
        "machine": {"cpu": bench_compare.cpu_model(), "cpus": os.cpu_count()},
        "gate_gap_ms": args.gate_gap_ms,
    }
    if "limits" in parts:
        upstream_proc, upstream = spawn_upstream()
        try:
            report["limits_end_to_end"] = []
            report["limits_gate"] = []
            for backend in args.backends.split(","):
                for charges in (10, 100_000):
                    print(f"limits: {backend}, {charges:,} charges in the window", file=sys.stderr)
                    report["limits_gate"].append(
                        await gate_case(backend, charges, args.gate_iterations, args.gate_gap_ms / 1000)
                    )
                    report["limits_end_to_end"].append(
                        await limits_case(upstream, backend, charges, args.calls, args.rounds)
                    )
        finally:
            bench_compare.stop(bench_compare.Target("upstream", "", processes=[upstream_proc]))
    if "limits-start" in parts:
        upstream_proc, upstream = spawn_upstream()
        try:
            report["limits_start"] = []
            for backend in args.backends.split(","):
                print(f"limits through helio start: {backend}", file=sys.stderr)
                report["limits_start"].append(
                    await limits_start_case(upstream, backend, args.calls, args.rounds)
                )
        finally:
            bench_compare.stop(bench_compare.Target("upstream", "", processes=[upstream_proc]))
    if "sessions" in parts:
        print("sessions", file=sys.stderr)
        report["sessions"] = await sessions_part([1, 100, 1000], args.calls)
    return report


def table(report: dict[str, Any]) -> str:
    lines = [f"{report['date']}  {report['machine']['cpu']} x{report['machine']['cpus']}"]
    if "limits_gate" in report:
        lines.append(f"limit windows: {report['limits_window']}")
    if "limits_gate" in report:
        gap = report.get("gate_gap_ms") or 0
        spaced = f", {gap:g} ms apart (the loop idle between calls)" if gap else ", back to back"
        lines += ["", f"limits gate alone (reserve + commit), per call{spaced}:"]
        lines.append(
            f"{'backend':<10}{'charges':>9}  {'rule':<10}{'p50 ms':>9}{'p99 ms':>9}{'SQL stmts':>10}"
            f"{'round trips':>12}"
        )
        for row in report["limits_gate"]:
            for kind in ("rate", "spend", "unmatched"):
                r = row[kind]
                lines.append(
                    f"{row['backend']:<10}{row['charges_in_window']:>9,}  {kind:<10}{r['p50_ms']:>9.3f}"
                    f"{r['p99_ms']:>9.3f}{r['statements']:>10}{'-' if r['round_trips'] is None else r['round_trips']:>12}"
                )
    if "limits_end_to_end" in report:
        lines += ["", "through the proxy, c=1 (added = over the same proxy without a limit rule):"]
        lines.append(
            f"{'backend':<10}{'charges':>9}  {'none p50':>9}{'rate +p50':>10}{'rate +p99':>10}"
            f"{'spend +p50':>11}{'spend +p99':>11}"
        )
        for row in report["limits_end_to_end"]:
            lines.append(
                f"{row['backend']:<10}{row['charges_in_window']:>9,}  {row['none']['p50_ms']:>9.3f}"
                f"{row['rate']['added_p50_ms']:>+10.3f}{row['rate']['added_p99_ms']:>+10.3f}"
                f"{row['spend']['added_p50_ms']:>+11.3f}{row['spend']['added_p99_ms']:>+11.3f}"
            )
    if "limits_start" in report:
        lines += [
            "",
            "through helio start (20 rules + the limit rule, its own audit writer), c=1; calls over 2 ms:",
        ]
        lines.append(
            f"{'backend':<10}{'none p50':>9}{'none p99':>9}{'>2ms':>6}{'rate +p50':>10}{'rate +p99':>10}"
            f"{'>2ms':>6}{'spend +p50':>11}{'spend +p99':>11}{'>2ms':>6}"
        )
        for row in report["limits_start"]:
            none, rate, spend = row["none"], row["rate"], row["spend"]
            lines.append(
                f"{row['backend']:<10}{none['p50_ms']:>9.3f}{none['p99_ms']:>9.3f}{none['over_2ms']:>6}"
                f"{rate['added_p50_ms']:>+10.3f}{rate['added_p99_ms']:>+10.3f}{rate['over_2ms']:>6}"
                f"{spend['added_p50_ms']:>+11.3f}{spend['added_p99_ms']:>+11.3f}{spend['over_2ms']:>6}"
            )
    if "sessions" in report:
        lines += ["", "open sessions (helio start, 20 rules):"]
        lines.append(f"{'sessions':>9}{'RSS MiB':>10}{'p50 ms':>9}{'p99 ms':>9}")
        for row in report["sessions"]:
            lines.append(
                f"{row['open_sessions']:>9,}{row['rss_mib']:>10.1f}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", default="limits,sessions")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gate-iterations", type=int, default=500)
    parser.add_argument(
        "--gate-gap-ms",
        type=float,
        default=0.0,
        help="limits: the gate's calls this many ms apart, the loop idle between them (as between "
        "a proxy's calls), instead of back to back",
    )
    parser.add_argument("--json", type=Path, default=ROOT / ".tools" / "bench" / "scale.json")
    parser.add_argument(
        "--sliding",
        action="store_true",
        help="limits: 1 m windows whose charges span the whole window, so they age out on every call",
    )
    arguments = parser.parse_args()
    if arguments.sliding:
        sliding()
    import uvloop

    result = uvloop.run(main(arguments))
    print(table(result))
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nJSON: {arguments.json}")
