"""Failure behaviour of replicas on one PostgreSQL (issue 18, point 5; docs/scale-out.md).

* a replica SIGKILLed mid-load loses no charged reservation and no strict-mode audit record;
* PostgreSQL restarted mid-load: calls that need the store fail closed (``store_unavailable``;
  ``audit_unavailable`` under strict audit until a record commits again),
  none waits longer than the request timeout, and service resumes without a proxy restart;
* a replica cut off from the database (a network namespace of the test's own, reaching
  PostgreSQL through a veth pair) fails closed while the other replica keeps serving.

These restart the shared PostgreSQL server and need root (``ip netns``), so they are not part of
the default suite: ``uv run nox -s replicas`` runs them (``HELIO_REPLICAS=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from helio_proxy.store import create_store
from helio_proxy.store.testing import postgres_schema
from tests.e2e.conftest import demo_upstream, free_port, helio, wait_for_port
from tests.e2e.test_limits_e2e import HEADERS, answer, succeeded

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.replicas,
    pytest.mark.skipif(
        os.environ.get("HELIO_REPLICAS") != "1",
        reason="restarts the shared PostgreSQL and needs root: run with `uv run nox -s replicas`",
    ),
]

STARTUP = 90.0
"""Seconds a proxy may take to listen (generous: these run beside other suites on a small machine)."""
REQUEST_TIMEOUT = 20.0
"""The proxies' upstream.request_timeout: no call may be held longer than this by the store."""

POLICIES = """policies:
  default: allow
  rules:
    - name: pay-after-weather
      match: {tool: create_payment}
      requires: [get_weather]
      action: spend_limit
      limits:
        max_spend: {field: '$.amount', limit: 100000000, currency: GBP, window: 24h}
"""


def config_text(
    port: int, upstream_port: int, store_url: str, tmp_path: Path, *, host: str = "127.0.0.1"
) -> str:
    # A replica in the test's own network namespace: reachable only from this machine's test, so
    # it may run without agent authentication (listen.allow_unauthenticated, docs/agent-auth.md).
    hosts = (
        f"  allowed_hosts: ['{host}:{port}', '{host}']\n  allow_unauthenticated: true\n"
        if host != "127.0.0.1"
        else ""
    )
    return (
        "version: '1'\n"
        f"upstream:\n  url: 'http://127.0.0.1:{upstream_port}/mcp'\n  request_timeout: {int(REQUEST_TIMEOUT)}s\n"
        f"listen:\n  port: {port}\n  host: '{host}'\n{hosts}"
        f"audit:\n  path: '{tmp_path / 'unused.db'}'\n  durability: strict\n"
        f"store:\n  url: '{store_url}'\n"
        "dashboard:\n  enabled: false\n" + POLICIES
    )


async def tool_call(
    http: httpx.AsyncClient, url: str, session: str, request_id: int, tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    headers = {**HEADERS, "x-helio-session-id": session}
    return answer(await http.post(url, json=body, headers=headers), request_id)


def reason(message: dict[str, Any]) -> str:
    """``ok``, a block reason, or the upstream failure class."""
    if succeeded(message):
        return "ok"
    data = message.get("error", {}).get("data") or {}
    return str(data.get("reason") or data.get("failure_class") or message.get("error", {}).get("code"))


def store_rows(url: str, query: str, *, scalars: bool = True) -> list[Any]:
    store = create_store(url)
    store.open_sync()
    try:
        if scalars:
            return store.read_sync(lambda c: list(c.execute(text(query)).scalars().all()))
        return store.read_sync(lambda c: [tuple(row) for row in c.execute(text(query))])
    finally:
        store.close_sync()


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False).returncode == 0


def pg_cluster(action: str) -> None:
    for version in sorted(p.name for p in Path("/etc/postgresql").iterdir()):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=False, timeout=60
        )


@contextlib.contextmanager
def postgres_comes_back() -> Generator[None]:
    """Whatever happens in the block, PostgreSQL is up again afterwards (other tests share it)."""
    try:
        yield
    finally:
        if not pg_ready():
            pg_cluster("start")
        deadline = time.monotonic() + 60
        while not pg_ready() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pg_ready(), "PostgreSQL did not come back"


@contextlib.contextmanager
def running(args: list[str]) -> Generator[subprocess.Popen[str]]:
    """A process (in a process group of its own) with its output captured; the group is stopped
    (SIGTERM, then SIGKILL) and the pipe drained afterwards."""
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        yield process
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


async def until(condition: Callable[[], bool], within: float = 60) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached within {within}s")


async def load(
    url: str, session: str, stop: asyncio.Event, seen: list[tuple[float, float, str, str | None]], first: int
) -> None:
    """Payments of 1 in ``session`` (after its prerequisite), one after another, until ``stop``."""
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT + 10) as http:
        weather = await tool_call(http, url, session, first, "get_weather", {"city": "Paris"})
        assert succeeded(weather), weather
        n = first
        while not stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                recipient = f"{session}-{n}"  # names the call in its audit record's tool_input
                message = await tool_call(
                    http, url, session, n, "create_payment", {"amount": 1, "recipient": recipient}
                )
            except httpx.HTTPError as exc:
                seen.append((started, time.monotonic(), type(exc).__name__, None))
                await asyncio.sleep(0.05)
                continue
            outcome = reason(message)
            seen.append((started, time.monotonic(), outcome, recipient if outcome == "ok" else None))
            if outcome != "ok":
                await asyncio.sleep(0.05)


async def test_a_replica_killed_mid_load_loses_no_charged_reservation_and_no_strict_audit_record(
    tmp_path: Path,
) -> None:
    upstream_port = free_port()
    ports = [free_port(), free_port()]
    with (
        postgres_schema() as url,
        demo_upstream(upstream_port, tmp_path / "upstream.log"),
        ExitStack() as stack,
    ):
        proxies: list[subprocess.Popen[str]] = []
        for n, port in enumerate(ports):
            path = tmp_path / f"helio-{n}.yaml"
            path.write_text(config_text(port, upstream_port, url, tmp_path))
            proxies.append(stack.enter_context(running(helio("start", "-c", str(path)))))
        for port, proxy in zip(ports, proxies, strict=True):
            wait_for_port(port, proxy, STARTUP)
        stop = asyncio.Event()
        seen: list[list[tuple[float, float, str, str | None]]] = [[] for _ in range(8)]
        agents = [
            asyncio.ensure_future(
                load(f"http://127.0.0.1:{ports[n % 2]}/mcp", f"agent-{n}", stop, seen[n], n * 100_000)
            )
            for n in range(8)
        ]
        await until(lambda: sum(len(s) for s in seen[0::2]) >= 150)
        proxies[0].kill()  # SIGKILL mid-load: no drain, no atexit
        proxies[0].communicate(timeout=10)
        await asyncio.sleep(2)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*agents), 60)
        charges = {uuid.UUID(i).hex for i in store_rows(url, "SELECT audit_id FROM limit_events")}
        records = {
            uuid.UUID(row[0]).hex: json.loads(row[1])["recipient"]
            for row in store_rows(
                url,
                "SELECT id, tool_input FROM audit_records WHERE tool_name = 'create_payment'",
                scalars=False,
            )
        }
        recorded = set(records.values())
        charged = {records[i] for i in charges if i in records}
        verify = await asyncio.to_thread(
            subprocess.run,
            helio("audit", "verify", "-c", str(tmp_path / "helio-1.yaml")),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    answered_on_killed = {c for s in seen[0::2] for _, _, o, c in s if o == "ok" and c}
    answered_on_other = {c for s in seen[1::2] for _, _, o, c in s if o == "ok" and c}
    assert len(answered_on_killed) >= 100
    assert len(answered_on_other) >= 100
    answered = answered_on_killed | answered_on_other
    # Every payment an agent saw succeed is charged and audited (strict: recorded before answered).
    assert not answered - charged, f"{len(answered - charged)} answered payments lost their charge"
    assert not answered - recorded, f"{len(answered - recorded)} answered payments have no audit record"
    # Reservations of calls in flight on the killed replica stay charged (never refunded by a crash).
    assert len(charged) >= len(answered)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # After the kill, the killed replica's agents only saw connection errors; the other kept serving.
    killed_at = max(end for s in seen[0::2] for _, end, o, _ in s if o == "ok")
    assert any(start > killed_at for s in seen[1::2] for start, _, o, _ in s if o == "ok")


async def test_postgresql_restarted_mid_load_fails_closed_and_service_resumes_without_a_proxy_restart(
    tmp_path: Path,
) -> None:
    upstream_port, port = free_port(), free_port()
    with (
        postgres_comes_back(),
        postgres_schema() as url,
        demo_upstream(upstream_port, tmp_path / "upstream.log"),
    ):
        path = tmp_path / "helio.yaml"
        path.write_text(config_text(port, upstream_port, url, tmp_path))
        with running(helio("start", "-c", str(path))) as proxy:
            wait_for_port(port, proxy, STARTUP)
            stop = asyncio.Event()
            seen: list[list[tuple[float, float, str, str | None]]] = [[] for _ in range(4)]
            agents = [
                asyncio.ensure_future(
                    load(f"http://127.0.0.1:{port}/mcp", f"pg-{n}", stop, seen[n], n * 100_000)
                )
                for n in range(4)
            ]
            await until(lambda: sum(len(s) for s in seen) >= 60)
            down_at = time.monotonic()
            await asyncio.to_thread(pg_cluster, "stop")
            await asyncio.sleep(3)  # calls meet the database down
            await asyncio.to_thread(pg_cluster, "start")
            up_at = time.monotonic()
            # Service resumes by itself.
            await until(lambda: any(start > up_at and o == "ok" for s in seen for start, _, o, _ in s))
            resumed_at = min(start for s in seen for start, _, o, _ in s if start > up_at and o == "ok")
            await asyncio.sleep(3)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*agents), 60)
            assert proxy.poll() is None  # the same process throughout
        outcomes = [entry for s in seen for entry in s]
    during = {o for start, end, o, _ in outcomes if end > down_at and start < up_at}
    assert "store_unavailable" in during
    assert during <= {"ok", "store_unavailable", "audit_unavailable"}, during
    assert max(end - start for start, end, _, _ in outcomes) < REQUEST_TIMEOUT
    resumed = [o for start, _, o, _ in outcomes if start > resumed_at]
    assert len(resumed) >= 10
    assert set(resumed) == {"ok"}
    blocked = sum(1 for _, _, o, _ in outcomes if o == "store_unavailable")
    print(
        f"\nPostgreSQL restart: {blocked} calls blocked store_unavailable, longest call "
        f"{max(end - start for start, end, _, _ in outcomes):.2f}s, service back "
        f"{resumed_at - up_at:.2f}s after the server started"
    )


# -- a replica cut off from the database ------------------------------------------------------


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def namespace_with_links() -> Generator[tuple[str, str, str, str]]:
    """A network namespace with two veth pairs to the host: one agents use, one to the database.

    Yields ``(namespace, agent address in it, host address on the database link, host-side
    database link name)``; everything is removed afterwards.
    """
    tag = uuid.uuid4().hex[:6]
    ns = f"helio-{tag}"
    net = 100 + int(tag[:2], 16) % 100
    agent_host, agent_ns, db_host, db_ns = f"ha{tag}", f"na{tag}", f"hd{tag}", f"nd{tag}"
    ip("netns", "add", ns)
    try:
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        for host_end, ns_end, subnet in ((agent_host, agent_ns, 1), (db_host, db_ns, 2)):
            ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            ip("link", "set", ns_end, "netns", ns)
            ip("addr", "add", f"10.{net}.{subnet}.1/24", "dev", host_end)
            ip("link", "set", host_end, "up")
            ip("netns", "exec", ns, "ip", "addr", "add", f"10.{net}.{subnet}.2/24", "dev", ns_end)
            ip("netns", "exec", ns, "ip", "link", "set", ns_end, "up")
        yield ns, f"10.{net}.1.2", f"10.{net}.2.1", db_host
    finally:
        for link in (agent_host, db_host):
            subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@pytest.mark.skipif(shutil.which("socat") is None or os.geteuid() != 0, reason="needs root and socat")
async def test_a_replica_cut_off_from_the_database_fails_closed_while_the_other_keeps_serving(
    tmp_path: Path,
) -> None:
    upstream_port, port_a, port_b, upstream_b, relay_port = (free_port() for _ in range(5))
    with (
        postgres_schema() as url,
        demo_upstream(upstream_port, tmp_path / "upstream.log"),
        namespace_with_links() as (ns, b_host, db_host, db_link),
        ExitStack() as stack,
    ):
        # The namespace reaches PostgreSQL (loopback-only on the host) through a relay on the veth.
        relay = stack.enter_context(
            running(
                [
                    "socat",
                    f"TCP-LISTEN:{relay_port},bind={db_host},fork,reuseaddr",
                    "TCP:127.0.0.1:5432",
                ]
            )
        )
        wait_for_port_on(db_host, relay_port, relay)
        b_url = make_url(url).set(host=db_host, port=relay_port).render_as_string(hide_password=False)
        in_ns = ["ip", "netns", "exec", ns]
        upstream_proc = stack.enter_context(
            running([*in_ns, sys.executable, "-m", "helio_proxy.demo.server", "--port", str(upstream_b)])
        )
        (tmp_path / "a.yaml").write_text(config_text(port_a, upstream_port, url, tmp_path))
        (tmp_path / "b.yaml").write_text(config_text(port_b, upstream_b, b_url, tmp_path, host=b_host))
        replica_a = stack.enter_context(running(helio("start", "-c", str(tmp_path / "a.yaml"))))
        replica_b = stack.enter_context(running([*in_ns, *helio("start", "-c", str(tmp_path / "b.yaml"))]))
        wait_for_port(port_a, replica_a, STARTUP)
        wait_for_port_on(b_host, port_b, replica_b, STARTUP)
        assert upstream_proc.poll() is None
        a, b = f"http://127.0.0.1:{port_a}/mcp", f"http://{b_host}:{port_b}/mcp"
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT + 10) as http:
            # Both replicas serve one session: the prerequisite ran on A unlocks a payment on B.
            assert succeeded(await tool_call(http, a, "cut", 1, "get_weather", {"city": "Oslo"}))
            assert succeeded(await tool_call(http, b, "cut", 2, "create_payment", {"amount": 1}))
            ip("link", "set", db_link, "down")  # B loses the database, agents still reach it
            answers_b: list[tuple[float, str]] = []
            answers_a: list[str] = []
            for n in range(3):
                started = time.monotonic()
                message = await tool_call(http, b, "cut", 10 + n, "create_payment", {"amount": 1})
                answers_b.append((time.monotonic() - started, reason(message)))
                answers_a.append(
                    reason(await tool_call(http, a, "cut", 20 + n, "create_payment", {"amount": 1}))
                )
            ip("link", "set", db_link, "up")
            resumed = "?"
            async with asyncio.timeout(60):  # B recovers by itself once the link is back
                for n in range(600):
                    resumed = reason(
                        await tool_call(http, b, "cut", 100 + n, "create_payment", {"amount": 1})
                    )
                    if resumed == "ok":
                        break
                    await asyncio.sleep(0.2)
    # The first call finds the store gone (store_unavailable, after the connection limits); its
    # strict audit record fails too, so the next ones are refused at once (audit_unavailable).
    assert answers_b[0][1] == "store_unavailable", answers_b
    assert {r for _, r in answers_b} <= {"store_unavailable", "audit_unavailable"}, answers_b
    assert max(t for t, _ in answers_b) < REQUEST_TIMEOUT
    assert answers_a == ["ok", "ok", "ok"]
    assert resumed == "ok"
    print(
        f"\nCut-off replica: answers in {', '.join(f'{t:.2f}s' for t, _ in answers_b)}; the other: {answers_a}"
    )


def wait_for_port_on(host: str, port: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"process exited with {process.returncode} before listening:\n{out}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on {host}:{port} within {timeout}s")
