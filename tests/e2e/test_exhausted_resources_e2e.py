"""Exhausted resources against a real ``helio start`` (issue 16 point 6).

* A full disk under the SQLite store: the proxy's ``RLIMIT_FSIZE`` is lowered under it while it
  runs (``prlimit``), so every write past 4 KiB fails as on a full disk. The error is logged,
  ``/healthz`` answers 503 ``degraded`` naming ``audit_unavailable``, strict durability refuses
  calls with ``reason: audit_unavailable`` (nothing is forwarded unrecorded), the proxy recovers by
  itself once the disk has room, and ``PRAGMA integrity_check`` finds the database intact.
* SIGTERM while calls are held for approval: each is answered ``shutdown_cancelled`` and recorded.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.e2e.conftest import free_port, helio, running, wait_for_port
from tests.harness import audit_records

pytestmark = pytest.mark.e2e

HEADERS: Final = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
ADMIN: Final = "a" * 40
FULL_DISK_BYTES: Final = 4096
"""The file size limit that stands for a full disk: a WAL frame (a 4 KiB page + header) never fits."""


def reply_to(response: httpx.Response, request_id: int) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:500]
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
) -> Any:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    headers = {**HEADERS, "x-helio-session-id": "agent-1"}
    return reply_to(await http.post(url, json=body, headers=headers), request_id)


async def health_until(
    http: httpx.AsyncClient, url: str, status: int, within: float = 15.0
) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            response = await http.get(url)
            if response.status_code == status:
                return response.json()
            await asyncio.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


async def test_a_full_disk_under_the_store_fails_strict_mode_closed_alerts_and_corrupts_nothing(
    tmp_path: Path, demo_port: int
) -> None:
    proxy, upstream = free_port(), demo_port
    db = tmp_path / "audit.db"
    path = tmp_path / "helio.yaml"
    path.write_text(
        "version: '1'\n"
        f"upstream:\n  url: 'http://127.0.0.1:{upstream}/mcp'\n  request_timeout: 10s\n"
        f"listen:\n  port: {proxy}\n"
        f"audit:\n  path: '{db}'\n  durability: strict\n"
        "dashboard:\n  enabled: false\n"
    )
    url, health = f"http://127.0.0.1:{proxy}/mcp", f"http://127.0.0.1:{proxy}/healthz"
    with running(helio("start", "-c", str(path)), cwd=tmp_path) as process:
        wait_for_port(proxy, process)
        async with httpx.AsyncClient(timeout=30) as http:
            assert "result" in await call(http, url, 1, "get_weather", {"city": "before"})
            assert (await http.get(health)).json()["status"] == "ok"

            _, hard = resource.prlimit(process.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, hard))
            # This call is forwarded (nothing has failed yet); its record cannot be kept.
            unrecorded = asyncio.create_task(call(http, url, 2, "get_weather", {"city": "unrecorded"}))
            degraded = await health_until(http, health, 503)
            refused = await call(http, url, 3, "get_weather", {"city": "refused"})
            await unrecorded

            resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, hard))
            recovered = await health_until(http, health, 200)
            after = await call(http, url, 4, "get_weather", {"city": "after"})
        output = stop(process)

    assert degraded["status"] == "degraded"
    assert "audit_unavailable" in degraded["problems"]
    assert refused["error"]["code"] == -32001
    assert refused["error"]["data"]["reason"] == "audit_unavailable"
    assert refused["error"]["data"]["retry_allowed"] is True
    assert recovered["status"] == "ok"
    assert after["result"]["isError"] is False
    assert "audit store cannot be written" in output
    assert "audit store writable again" in output

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    records = audit_records(db, record_kind="tool_call")
    cities = [(r["tool_input"]["city"], r["block_reason"]) for r in records]
    # The refusal's own record was committed once the disk had room again (its retry); the
    # forwarded call whose record could not be written is the one loss, logged and counted.
    assert cities == [("before", None), ("refused", "audit_unavailable"), ("after", None)]


async def test_sigterm_answers_calls_held_for_approval_shutdown_cancelled_and_records_them(
    tmp_path: Path, demo_port: int
) -> None:
    proxy, dashboard, upstream = free_port(), free_port(), demo_port
    db = tmp_path / "audit.db"
    path = tmp_path / "helio.yaml"
    path.write_text(
        f"""version: '1'
upstream:
  url: 'http://127.0.0.1:{upstream}/mcp'
listen:
  port: {proxy}
policies:
  rules:
    - name: approve-payments
      match: {{tool: create_payment}}
      action: require_approval
      approval: {{timeout: 5m}}
audit:
  path: '{db}'
dashboard:
  port: {dashboard}
  api_secret: '{ADMIN}'
"""
    )
    url = f"http://127.0.0.1:{proxy}/mcp"
    operator = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{dashboard}", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10
    )
    with running(helio("start", "-c", str(path)), cwd=tmp_path) as process:
        wait_for_port(proxy, process)
        wait_for_port(dashboard, process)
        async with operator, httpx.AsyncClient(timeout=30) as http:
            held = [
                asyncio.create_task(call(http, url, n, "create_payment", {"amount": n, "recipient": "acme"}))
                for n in (1, 2)
            ]
            async with asyncio.timeout(20):
                while True:
                    pending = await operator.get("/api/approvals", params={"status": "pending"})
                    if len(pending.json()["data"]) == 2:
                        break
                    await asyncio.sleep(0.05)
            assert not any(task.done() for task in held)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            answers = [await task for task in held]
            answered_in = time.monotonic() - signalled
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output

    for answer in answers:
        assert answer["error"]["code"] == -32001
        assert answer["error"]["data"]["reason"] == "shutdown_cancelled"
        assert answer["error"]["data"]["retry_allowed"] is True
    assert answered_in < 10
    records = audit_records(db, tool="create_payment", record_kind="tool_call")
    assert sorted((r["tool_input"]["amount"], r["block_reason"]) for r in records) == [
        (1, "shutdown_cancelled"),
        (2, "shutdown_cancelled"),
    ]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
