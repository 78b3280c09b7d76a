"""Limits across real processes: two ``helio start`` replicas sharing one PostgreSQL never
overspend together, and the seeds' rate and spend rules work verbatim."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from helio_proxy.store import create_store
from helio_proxy.store.testing import postgres_schema
from tests.e2e.conftest import free_port, helio, running, wait_for_port

pytestmark = pytest.mark.e2e

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
SEEDS = Path(__file__).resolve().parents[2] / "examples" / "seeds" / "readme-main.yaml"


def config_text(
    proxy_port: int, upstream_port: int, audit: Path, policies: str, store_url: str | None = None
) -> str:
    store = f"store:\n  url: '{store_url}'\n" if store_url else ""
    return (
        "version: '1'\n"
        f"upstream:\n  url: 'http://127.0.0.1:{upstream_port}/mcp'\n  request_timeout: 20s\n"
        f"listen:\n  port: {proxy_port}\n"
        f"audit:\n  path: '{audit}'\n"
        "dashboard:\n  enabled: false\n" + store + policies
    )


def answer(response: httpx.Response, request_id: int) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: "):
                message = json.loads(line[6:])
                if message.get("id") == request_id:
                    return message
        raise AssertionError(f"no answer to {request_id}")
    return response.json()


async def call(
    http: httpx.AsyncClient, url: str, request_id: int, tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    return answer(await http.post(url, json=body, headers=HEADERS), request_id)


def succeeded(message: dict[str, Any]) -> bool:
    return "result" in message and not message["result"].get("isError")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


SPEND = """policies:
  rules:
    - name: payments
      match: {tool: create_payment}
      action: spend_limit
      limits:
        max_spend: {field: '$.amount', limit: 5000, currency: GBP, window: 24h}
"""


@pytest.mark.postgres
async def test_two_proxies_sharing_postgresql_let_exactly_50_of_200_payments_through(
    tmp_path: Path, demo_port: int
) -> None:
    upstream_port = demo_port
    ports = [free_port(), free_port()]
    with postgres_schema() as url, ExitStack() as stack:
        proxies = []
        for n, port in enumerate(ports):
            path = tmp_path / f"helio-{n}.yaml"
            path.write_text(config_text(port, upstream_port, tmp_path / f"unused-{n}.db", SPEND, url))
            proxy = stack.enter_context(running(helio("start", "-c", str(path))))
            proxies.append(proxy)
        for port, proxy in zip(ports, proxies, strict=True):
            wait_for_port(port, proxy)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http, asyncio.timeout(110):
            # Both replicas warm (a call each that no limit counts) before the burst: a limited call
            # now takes one round trip, so 50 slots go in milliseconds, and a replica still serving
            # its first call could otherwise see none of them.
            for n, port in enumerate(ports):
                warm = await call(
                    http, f"http://127.0.0.1:{port}/mcp", 1000 + n, "get_weather", {"city": "Oslo"}
                )
                assert succeeded(warm), warm
            answers = await asyncio.gather(
                *(
                    call(http, f"http://127.0.0.1:{ports[i % 2]}/mcp", i, "create_payment", {"amount": 100})
                    for i in range(200)
                )
            )
        outputs = [stop(proxy) for proxy in proxies]
        store = create_store(url)
        store.open_sync()
        try:
            charged = store.read_sync(
                lambda c: c.execute(text("SELECT amount FROM limit_events")).scalars().all()
            )
        finally:
            store.close_sync()
    through = [i for i, a in enumerate(answers) if succeeded(a)]
    blocked = [a for a in answers if "error" in a]
    assert len(through) == 50
    assert {i % 2 for i in through} == {0, 1}  # both replicas let some through
    assert len(blocked) == 150
    assert {a["error"]["data"]["reason"] for a in blocked} == {"spend_limited"}
    assert sum(Decimal(a) for a in charged) == Decimal(5000)
    assert all("limits_unavailable" not in output for output in outputs)


def seed_rules() -> str:
    """The rate and spend rules of the seed README config, byte for byte."""
    seed = SEEDS.read_text()
    start = seed.index("    # Rate limit expensive API calls")
    end = seed.index("\naudit:")
    return seed[start:end].rstrip() + "\n"


async def test_the_seed_rate_and_spend_rules_work_verbatim(tmp_path: Path, demo_port: int) -> None:
    rules = seed_rules()
    assert "key: tool" in rules
    assert "max_spend:" in rules
    policies = "policies:\n  default: allow\n\n  rules:\n" + rules
    proxy_port, upstream_port = free_port(), demo_port
    path = tmp_path / "helio.yaml"
    path.write_text(config_text(proxy_port, upstream_port, tmp_path / "audit.db", policies))
    url = f"http://127.0.0.1:{proxy_port}/mcp"
    with running(helio("start", "-c", str(path))) as proxy:
        wait_for_port(proxy_port, proxy)
        async with httpx.AsyncClient(timeout=20) as http:
            searches = [await call(http, url, i, "search_docs", {"query": "refund"}) for i in range(101)]
            payments = [await call(http, url, 1000 + i, "create_payment", {"amount": 100}) for i in range(51)]
            text_amount = await call(http, url, 2000, "create_payment", {"amount": "100"})
        output = stop(proxy)
    assert all(succeeded(a) for a in searches[:100])
    limited = searches[100]["error"]["data"]
    assert (limited["reason"], limited["max_calls"], limited["window_seconds"]) == ("rate_limited", 100, 3600)
    assert all(succeeded(a) for a in payments[:50])
    spent = payments[50]["error"]["data"]
    assert (spent["reason"], spent["current_spend"], spent["max_spend"], spent["currency"]) == (
        "spend_limited",
        "5000",
        "5000",
        "GBP",
    )
    # A text amount cannot slip past the spend limit: the data plane refuses it against the
    # tool's inputSchema (amount: number) before the limit is even consulted.
    assert text_amount["error"]["data"]["reason"] == "invalid_arguments"
    assert text_amount["error"]["data"]["errors"][0]["path"] == "$.amount"
    assert "Policies: 2 rules loaded" in output
    assert "limits_unavailable" not in output


def worker_pids(supervisor: int) -> list[int]:
    """The processes ``supervisor`` started (read from /proc)."""
    out: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == supervisor:
            out.append(int(stat.parent.name))
    return sorted(out)


def established_on(pid: int, port: int, state: str = "01") -> int:
    """How many TCP sockets on local ``port`` process ``pid`` holds in ``state`` (01 ESTABLISHED, 0A LISTEN)."""
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            local_port = int(parts[1].rsplit(":", 1)[1], 16)
            if local_port == port and parts[3] == state and parts[9] in inodes:
                count += 1
    return count


async def all_listening(workers: list[int], port: int) -> None:
    """Until every worker listens on ``port`` (each joins the port when it is ready), so that
    all of them can take connections; at most 60 s."""
    for _ in range(600):
        if all(established_on(pid, port, "0A") for pid in workers):
            return
        await asyncio.sleep(0.1)


SPEND_2500 = SPEND.replace("limit: 5000", "limit: 2500")


@dataclass
class TwoWorkersRun:
    answers: list[dict[str, Any]]
    served: list[int]
    """Keep-alive connections each worker held once the calls were answered."""
    output: str
    rows: dict[str, list[tuple[Any, ...]]]
    """Each query's rows, read from the store after the proxy stopped."""


async def two_workers_run(
    tmp_path: Path,
    backend: str,
    demo_port: int,
    policy: str,
    *,
    calls: int,
    amount: int,
    queries: dict[str, str],
) -> TwoWorkersRun:
    """``calls`` payments of ``amount`` over 64 connections to ``helio start --workers 2``
    (SQLite or a fresh PostgreSQL schema), then the proxy stopped and ``queries`` run."""
    proxy_port = free_port()
    audit = tmp_path / "audit.db"
    with postgres_schema() if backend == "postgres" else contextlib.nullcontext(None) as pg_url:
        path = tmp_path / "helio.yaml"
        path.write_text(config_text(proxy_port, demo_port, audit, policy, pg_url))
        with running(helio("start", "-c", str(path), "--workers", "2")) as proxy:
            wait_for_port(proxy_port, proxy)
            workers = worker_pids(proxy.pid)
            assert len(workers) == 2
            await all_listening(workers, proxy_port)
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(timeout=60, limits=limits) as http, asyncio.timeout(110):
                url = f"http://127.0.0.1:{proxy_port}/mcp"
                answers = await asyncio.gather(
                    *(call(http, url, i, "create_payment", {"amount": amount}) for i in range(calls))
                )
                # The client's keep-alive connections are still open: both workers hold some.
                served = [established_on(pid, proxy_port) for pid in workers]
            output = stop(proxy)
        store = create_store(pg_url or f"sqlite:///{audit}")
        store.open_sync()
        try:
            rows = {
                name: store.read_sync(lambda c, q=q: [tuple(r) for r in c.execute(text(q))])
                for name, q in queries.items()
            }
        finally:
            store.close_sync()
    return TwoWorkersRun(list(answers), served, output, rows)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_two_workers_on_one_port_let_exactly_25_of_100_payments_through(
    tmp_path: Path, backend: str, demo_port: int
) -> None:
    run = await two_workers_run(
        tmp_path,
        backend,
        demo_port,
        SPEND_2500,
        calls=100,
        amount=100,
        queries={"charged": "SELECT amount FROM limit_events"},
    )
    assert all(n > 0 for n in run.served), run.served
    through = [a for a in run.answers if succeeded(a)]
    blocked = [a for a in run.answers if "error" in a]
    assert (len(through), len(blocked)) == (25, 75)
    assert {a["error"]["data"]["reason"] for a in blocked} == {"spend_limited"}
    assert sum(Decimal(a) for (a,) in run.rows["charged"]) == Decimal(2500)
    assert "limits_unavailable" not in run.output
    assert run.output.count("Policies: 1 rules loaded") == 2  # each worker started the whole proxy


def test_workers_refuse_a_stdio_upstream_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    path.write_text(
        "version: '1'\n"
        "upstream: {url: 'stdio://demo', transport: stdio, command: 'true'}\n"
        f"listen: {{port: {free_port()}}}\n"
        f"audit: {{path: '{tmp_path / 'audit.db'}'}}\n"
        "dashboard: {enabled: false}\n"
    )
    done = subprocess.run(
        helio("start", "-c", str(path), "--workers", "2"), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3  # a startup error, like a port in use
    assert "--workers 2 cannot run this config (use --workers 1)" in done.stderr
    assert "stdio server: each worker would start its own copy" in done.stderr


RATE_320 = """policies:
  rules:
    - name: payments
      match: {tool: create_payment}
      action: rate_limit
      limits: {max_calls: 320, window: 1h, key: tool}
"""


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_two_workers_charging_in_grants_let_exactly_the_limit_through(
    tmp_path: Path, backend: str, demo_port: int
) -> None:
    """A 320-call limit is charged in grants of 5 up to half of it, then call by call: two
    workers, 400 calls over 64 connections, exactly 320 through; once stopped, the ledger holds
    one row per call let through, each with that call's audit id, and no grant left."""
    run = await two_workers_run(
        tmp_path,
        backend,
        demo_port,
        RATE_320,
        calls=400,
        amount=1,
        queries={
            "charges": "SELECT amount, audit_id FROM limit_events",
            "allowed": "SELECT id FROM audit_records WHERE tool_name = 'create_payment' AND block_reason IS NULL",
        },
    )
    through = [a for a in run.answers if succeeded(a)]
    blocked = [a for a in run.answers if "error" in a]
    assert (len(through), len(blocked)) == (320, 80)
    assert {a["error"]["data"]["reason"] for a in blocked} == {"rate_limited"}
    assert [str(amount) for amount, _ in run.rows["charges"]] == ["1"] * 320
    assert {str(audit_id) for _, audit_id in run.rows["charges"]} == {str(i) for (i,) in run.rows["allowed"]}
    assert "limits_unavailable" not in run.output
