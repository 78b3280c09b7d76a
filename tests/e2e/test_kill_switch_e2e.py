"""The kill switch across two ``helio start`` processes on one store (SQLite file, PostgreSQL schema).

``helio kill`` (a third process, writing the store) → calls on both proxies are answered
``kill_switch`` within a second (the propagation time is printed), a call held for approval on
the second proxy is released with the same block, a restarted proxy is still killed, and
``helio resume`` → both serve again. The audit trail holds both switch records (who, why) and the
blocked calls.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from helio_proxy.audit.query import AuditFilter, fetch
from helio_proxy.store import create_store
from helio_proxy.store.testing import Backend, store_url_for
from tests.e2e.conftest import free_port, helio, running, wait_for_port
from tests.e2e.test_limits_e2e import HEADERS, answer, stop, succeeded

pytestmark = pytest.mark.e2e

ADMIN = "k" * 40
STARTUP = 90.0
"""Seconds a proxy may take to listen (two start at once; a loaded CI machine takes long)."""
POLICIES = """policies:
  default: allow
  rules:
    - name: approve-payments
      match: {tool: create_payment}
      action: require_approval
      approval: {timeout: 2m}
"""


def _config(proxy: int, dashboard: int, upstream: int, store: str) -> str:
    return (
        "version: '1'\n"
        f"upstream:\n  url: 'http://127.0.0.1:{upstream}/mcp'\n  request_timeout: 20s\n"
        f"listen:\n  port: {proxy}\n"
        f"store:\n  url: '{store}'\n"
        f"dashboard:\n  port: {dashboard}\n  api_secret: '{ADMIN}'\n" + POLICIES
    )


async def _call(url: str, request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    async with httpx.AsyncClient(timeout=30) as http:
        headers = {**HEADERS, "x-helio-session-id": "e2e-kill"}
        return answer(await http.post(url, json=body, headers=headers), request_id)


def _reason(message: dict[str, Any]) -> str | None:
    return message.get("error", {}).get("data", {}).get("reason")


async def _until(urls: list[str], killed: bool, started: float) -> list[tuple[float, float]]:
    """Call every proxy (concurrently) until each answers as ``killed`` says: for each, the
    seconds after ``started`` at which the first such call was sent and answered."""

    async def one(n: int, url: str) -> tuple[float, float]:
        async with asyncio.timeout(10):
            attempt = 0
            while True:
                attempt += 1
                sent = time.perf_counter() - started
                message = await _call(url, 1000 * n + attempt, "get_weather", {"city": "Oslo"})
                if (_reason(message) == "kill_switch") == killed:
                    return sent, time.perf_counter() - started
                await asyncio.sleep(0.01)

    return list(await asyncio.gather(*(one(n, url) for n, url in enumerate(urls))))


def _ms(times: list[tuple[float, float]]) -> str:
    return ", ".join(f"sent {sent * 1000:.0f} ms / answered {done * 1000:.0f} ms" for sent, done in times)


def _cli(*args: str) -> tuple[float, str]:
    """Run ``helio ARGS``; the moment it exited (its write committed) and its output."""
    done = subprocess.run(helio(*args), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return time.perf_counter(), done.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_helio_kill_stops_both_proxies_within_a_second_and_resume_serves_again(
    backend: Backend, tmp_path: Path, demo_port: int
) -> None:
    begun = time.perf_counter()
    upstream = demo_port
    ports = [free_port(), free_port()]
    dashboards = [free_port(), free_port()]
    with store_url_for(backend, tmp_path) as store, ExitStack() as stack:
        configs: list[Path] = []
        for n in range(2):
            path = tmp_path / f"helio-{n}.yaml"
            path.write_text(_config(ports[n], dashboards[n], upstream, store))
            configs.append(path)
        processes = [stack.enter_context(running(helio("start", "-c", str(c)))) for c in configs]
        for n, process in enumerate(processes):
            wait_for_port(ports[n], process, STARTUP)
            wait_for_port(dashboards[n], process, STARTUP)
        urls = [f"http://127.0.0.1:{port}/mcp" for port in ports]
        print(f"\n{backend}: both proxies up after {time.perf_counter() - begun:.1f} s")
        for url in urls:
            assert succeeded(await _call(url, 1, "get_weather", {"city": "Oslo"}))

        held = asyncio.create_task(_call(urls[1], 7, "create_payment", {"amount": 5}))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dashboards[1]}", timeout=10) as api:
            async with asyncio.timeout(30):
                while not (  # noqa: ASYNC110 - another process holds the call; bounded
                    await api.get(
                        "/api/approvals",
                        params={"status": "pending"},
                        headers={"authorization": f"Bearer {ADMIN}"},
                    )
                ).json()["data"]:
                    await asyncio.sleep(0.05)
        assert not held.done()

        answered: list[float] = []
        held.add_done_callback(lambda _task: answered.append(time.perf_counter()))
        committed, said = _cli("kill", "-c", str(configs[0]), "--reason", "e2e incident", "--by", "oncall")
        assert "Kill switch ENGAGED (global) by oncall: e2e incident" in said
        blocked = await _until(urls, True, committed)
        async with asyncio.timeout(5):
            released = await held
        print(f"\n{backend}: first kill_switch answer after the CLI committed, per proxy: {_ms(blocked)}")
        print(
            f"{backend}: the held call was answered {(answered[0] - committed) * 1000:.0f} ms after the commit"
        )
        # The first blocked call on each proxy was sent within a second of the commit.
        assert max(sent for sent, _ in blocked) < 1.0
        assert answered[0] - committed < 1.0
        assert _reason(released) == "kill_switch"
        assert released["error"]["code"] == -32001
        assert released["error"]["data"]["retry_allowed"] is False

        # Persisted: the second proxy restarted is still killed from its first call.
        stop(processes[1])
        restarted = stack.enter_context(running(helio("start", "-c", str(configs[1]))))
        wait_for_port(ports[1], restarted, STARTUP)
        again = await _call(urls[1], 50, "get_weather", {"city": "Oslo"})
        assert _reason(again) == "kill_switch"
        assert again["error"]["data"]["engaged_by"] == "oncall"

        committed, said = _cli("resume", "-c", str(configs[1]), "--by", "oncall", "--reason", "all clear")
        assert "Kill switch released (global) by oncall" in said
        served = await _until(urls, False, committed)
        print(f"{backend}: first served call after resume committed, per proxy: {_ms(served)}")
        assert max(sent for sent, _ in served) < 1.0
        stop(processes[0])
        stop(restarted)

        audit = create_store(store)
        audit.open_sync()
        try:
            switches = audit.read_sync(
                lambda conn: fetch(conn, AuditFilter(record_kind="kill_switch"), limit=10, order="oldest")
            )
            calls = audit.read_sync(
                lambda conn: fetch(conn, AuditFilter(reason="kill_switch"), limit=100, order="oldest")
            )
        finally:
            audit.close_sync()
    assert [
        (r["metadata"]["engaged"], r["metadata"]["actor"], r["metadata"]["reason"], r["metadata"]["source"])
        for r in switches
    ] == [
        (True, "oncall", "e2e incident", "cli"),
        (False, "oncall", "all clear", "cli"),
    ]
    blocked_tools = [r["tool_name"] for r in calls]
    assert "create_payment" in blocked_tools
    assert blocked_tools.count("get_weather") >= 3  # both proxies, and the restarted one
