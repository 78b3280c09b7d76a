"""Session state across ``helio start --workers 2``: a ``requires`` gate opened on one worker is
open on the other, because ``store.session_state: auto`` keeps session state in the store there.

Real processes: the demo upstream, the supervisor and its two workers on one port (SQLite). Every
call goes over a fresh connection, so the kernel spreads them across the workers
(``SO_REUSEPORT``); with per-process session state about half of the calls after the
prerequisite would still be blocked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import free_port, helio, running, wait_for_port
from tests.e2e.test_limits_e2e import (
    HEADERS,
    all_listening,
    answer,
    config_text,
    stop,
    succeeded,
    worker_pids,
)

pytestmark = pytest.mark.e2e

GATE = """policies:
  default: allow
  rules:
    - name: pay-after-weather
      match: {tool: create_payment}
      requires: [get_weather]
"""


async def fresh_call(
    url: str, session: str, request_id: int, tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    async with httpx.AsyncClient(timeout=30) as http:  # a new connection per call
        headers = {**HEADERS, "x-helio-session-id": session}
        return answer(await http.post(url, json=body, headers=headers), request_id)


async def test_a_requires_gate_opened_on_one_worker_is_open_on_every_worker(
    tmp_path: Path, demo_port: int
) -> None:
    proxy_port, upstream_port = free_port(), demo_port
    path = tmp_path / "helio.yaml"
    path.write_text(config_text(proxy_port, upstream_port, tmp_path / "audit.db", GATE))
    with running(helio("start", "-c", str(path), "--workers", "2")) as proxy:
        wait_for_port(proxy_port, proxy)
        workers = worker_pids(proxy.pid)
        assert len(workers) == 2
        await all_listening(workers, proxy_port)
        url = f"http://127.0.0.1:{proxy_port}/mcp"
        before = [await fresh_call(url, "e2e-run", i, "create_payment", {"amount": 1}) for i in range(10)]
        weather = await fresh_call(url, "e2e-run", 100, "get_weather", {"city": "London"})
        after = [
            await fresh_call(url, "e2e-run", 200 + i, "create_payment", {"amount": 1}) for i in range(20)
        ]
        other = await fresh_call(url, "e2e-other", 300, "create_payment", {"amount": 1})
        output = stop(proxy)
    assert {a["error"]["data"]["reason"] for a in before} == {"dependency_missing"}
    assert succeeded(weather)
    assert [succeeded(a) for a in after] == [True] * 20
    assert other["error"]["data"]["reason"] == "dependency_missing"
    assert output.count("Session state: in the store") == 2
