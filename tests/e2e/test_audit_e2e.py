"""The audit trail of a real ``helio start`` process: 1,000 calls exported and verified, tampering
detected, and ``kill -9`` under ``durability: strict`` losing no answered call."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from helio_proxy.store import create_store
from helio_proxy.store.testing import Backend, store_url_for
from tests.e2e.conftest import free_port, helio, running, wait_for_port

pytestmark = pytest.mark.e2e

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
CONCURRENCY = 32


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    backend: Backend = request.param
    with store_url_for(backend, tmp_path) as url:
        yield url


def _write_config(tmp_path: Path, proxy_port: int, upstream_port: int, url: str, extra: str = "") -> Path:
    store = f"store:\n  url: '{url}'\n" if not url.startswith("sqlite") else ""
    audit_path = url.removeprefix("sqlite:///") if url.startswith("sqlite") else str(tmp_path / "unused.db")
    path = tmp_path / "helio.yaml"
    path.write_text(
        "version: '1'\n"
        f"upstream:\n  url: 'http://127.0.0.1:{upstream_port}/mcp'\n  request_timeout: 10s\n"
        f"listen:\n  port: {proxy_port}\n"
        f"audit:\n  path: '{audit_path}'\n{extra}"
        f"{store}"
        "dashboard:\n  enabled: false\n"
    )
    return path


def _params(i: int) -> dict[str, Any]:
    if i % 10 == 0:
        return {"arguments": {"n": i}}  # nameless: rejected by the proxy, never forwarded
    if i % 10 == 1:
        return {"name": "lookup_order", "arguments": {"order_id": f"missing-{i}"}}  # isError result
    return {"name": "get_weather", "arguments": {"city": f"city-{i}"}}


def _answer(response: httpx.Response, request_id: int) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: "):
                message = json.loads(line[6:])
                if message.get("id") == request_id:
                    return message
        raise AssertionError(f"no answer to {request_id}")
    return response.json()


def _decision_seen(answer: dict[str, Any]) -> str:
    error = answer.get("error")
    if error and error.get("data", {}).get("reason") == "missing_tool_name":
        return "rejected"
    assert "result" in answer, answer
    return "allow"


async def _drive(
    url: str,
    ids: range,
    seen: dict[int, str],
    milestone: tuple[int, asyncio.Event] | None = None,
    halt: asyncio.Event | None = None,
) -> None:
    """Call ``url`` once per id, ``CONCURRENCY`` at a time; record what each answer said.

    ``milestone`` (count, event): the event is set once that many answers have arrived. ``halt``:
    once set, calls not yet sent are not sent (calls in flight still read their answers)."""
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:

        async def one(i: int) -> None:
            async with gate:
                if halt is not None and halt.is_set():
                    return
                body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": _params(i)}
                try:
                    response = await client.post(url, json=body, headers=HEADERS)
                    seen[i] = _decision_seen(_answer(response, i))
                    if milestone is not None and len(seen) >= milestone[0]:
                        milestone[1].set()
                except httpx.HTTPError:
                    pass  # the proxy was killed mid-call: this call has no answer

        await asyncio.gather(*(one(i) for i in ids))


def _helio_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(helio(*args), capture_output=True, text=True, timeout=120, check=False)


def _stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM and wait for a clean exit; the process's output."""
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


def _exported(config: Path) -> list[dict[str, str]]:
    result = _helio_cli("export", "--format", "csv", "-c", str(config), "--limit", "10000")
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout, newline="")))


async def test_a_thousand_calls_are_exported_verified_and_tampering_is_named(
    tmp_path: Path, store_url: str, demo_port: int
) -> None:
    proxy_port, upstream_port = free_port(), demo_port
    config = _write_config(tmp_path, proxy_port, upstream_port, store_url)
    seen: dict[int, str] = {}
    with running(helio("start", "-c", str(config))) as proxy:
        wait_for_port(proxy_port, proxy)
        await _drive(f"http://127.0.0.1:{proxy_port}/mcp", range(1, 1001), seen)
        assert "Audit: " in _stop(proxy)  # SIGTERM: the writer drains before exit
    assert len(seen) == 1000

    rows = _exported(config)
    assert len(rows) == 1000
    assert {row["record_kind"] for row in rows} == {"tool_call"}
    recorded = {json.loads(row["metadata"])["request_id"]: row["policy_decision"] for row in rows}
    assert recorded == seen
    assert sum(1 for d in seen.values() if d == "rejected") == 100

    verified = _helio_cli("audit", "verify", "-c", str(config))
    assert verified.returncode == 0, verified.stderr
    assert "1000 records verified" in verified.stdout

    victim = next(row for row in rows[500:] if row["tool_name"] == "get_weather")
    flipped = victim["tool_input"].replace("city-", "citz-", 1)
    store = create_store(store_url)
    store.open_sync()
    try:
        store.submit(
            lambda c: c.execute(
                text("UPDATE audit_records SET tool_input = :v WHERE id = :id"),
                {"v": flipped, "id": victim["id"]},
            )
        ).result(timeout=10)
    finally:
        store.close_sync()
    broken = _helio_cli("audit", "verify", "-c", str(config))
    assert broken.returncode == 1
    assert victim["id"] in broken.stderr
    assert "altered" in broken.stderr


async def test_kill_9_under_strict_durability_loses_no_answered_call(
    tmp_path: Path, store_url: str, demo_port: int
) -> None:
    proxy_port, upstream_port = free_port(), demo_port
    config = _write_config(tmp_path, proxy_port, upstream_port, store_url, "  durability: strict\n")
    seen: dict[int, str] = {}
    url = f"http://127.0.0.1:{proxy_port}/mcp"
    with running(helio("start", "-c", str(config))) as proxy:
        wait_for_port(proxy_port, proxy)
        reached, killed = asyncio.Event(), asyncio.Event()
        load = asyncio.ensure_future(_drive(url, range(1, 5001), seen, (400, reached), killed))
        await asyncio.wait_for(reached.wait(), 60)
        proxy.kill()  # SIGKILL mid-load: no drain, no atexit
        proxy.communicate(timeout=10)
        # Calls sent from now on could only fail to connect; those in flight may still read an
        # answer the proxy wrote before it died, and count as answered.
        killed.set()
        await asyncio.wait_for(load, 60)
    answered = {i for i, d in seen.items() if d == "allow"}
    assert len(seen) >= 400

    with running(helio("start", "-c", str(config))) as restarted:  # reopen after the crash
        wait_for_port(proxy_port, restarted)
        _stop(restarted)

    rows = _exported(config)
    recorded = {json.loads(row["metadata"])["request_id"] for row in rows}
    assert len(rows) >= len(seen)
    missing = answered - recorded
    assert not missing, f"{len(missing)} answered calls have no record, e.g. {sorted(missing)[:5]}"
    assert {i for i, d in seen.items() if d == "rejected"} <= recorded
    verified = _helio_cli("audit", "verify", "-c", str(config))
    assert verified.returncode == 0, verified.stderr


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _writer_process_of(pid: int) -> int:
    """The proxy's one child (it starts its writer process just after binding its port)."""
    deadline = time.monotonic() + 30
    while not (children := _children(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    (child,) = children
    return child


def _alive(pid: int) -> bool:
    """Running (not gone, and not a zombie waiting for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


async def test_kill_9_with_a_writer_process_keeps_every_batch_handed_to_it(
    tmp_path: Path, demo_port: int
) -> None:
    """``audit.writer: process``: the proxy dies by SIGKILL; its writer process commits what it was
    given and exits by itself (docs/audit.md, "The writer")."""
    proxy_port = free_port()
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    config = _write_config(tmp_path, proxy_port, demo_port, url, "  writer: process\n")
    seen: dict[int, str] = {}
    with running(helio("start", "-c", str(config))) as proxy:
        wait_for_port(proxy_port, proxy)
        writer = _writer_process_of(proxy.pid)
        await _drive(f"http://127.0.0.1:{proxy_port}/mcp", range(1, 301), seen)
        await asyncio.sleep(0.5)  # past the 100 ms flush: every record has left the proxy
        proxy.kill()
        output, _ = proxy.communicate(timeout=10)
        assert "a writer process)" in output
        # It shares the proxy's output pipe, so the proxy's output ends when it has ended too.
        assert _gone_within(writer, 30)  # ended by itself with its input: no orphan left running
    assert len(seen) == 300
    rows = _exported(config)
    recorded = {json.loads(row["metadata"])["request_id"] for row in rows}
    assert set(seen) <= recorded
    verified = _helio_cli("audit", "verify", "-c", str(config))
    assert verified.returncode == 0, verified.stderr
