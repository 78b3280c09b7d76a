"""The README's demo: real processes on real ports, driven by the official MCP client."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from tests.e2e.conftest import free_port, helio, running, wait_for_port

pytestmark = pytest.mark.e2e


async def _session(url: str, mode: str) -> dict[str, Any]:
    async with Client(url, mode=mode) as client:
        tools = await client.list_tools()
        weather = await client.call_tool("get_weather", {"city": "London"})
        order = await client.call_tool("lookup_order", {"order_id": "A-1001"})
        missing = await client.call_tool("lookup_order", {"order_id": "nope"})
    return {
        "tools": sorted(t.name for t in tools.tools),
        "annotations": {
            t.name: t.annotations.model_dump(by_alias=True) if t.annotations else None for t in tools.tools
        },
        "weather": weather.model_dump(by_alias=True, exclude={"meta"}),
        "order": order.model_dump(by_alias=True, exclude={"meta"}),
        "missing_is_error": missing.is_error,
    }


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_demo_proxy_gives_the_official_client_the_same_results_as_the_server(
    ports: tuple[int, int], tmp_path: Path, mode: str
) -> None:
    proxy_port, upstream_port = ports
    dashboard_port = free_port()
    with running(
        helio(
            "demo",
            "--port",
            str(proxy_port),
            "--upstream-port",
            str(upstream_port),
            "--dashboard-port",
            str(dashboard_port),
            "--sdk-port",
            str(free_port()),
        ),
        cwd=tmp_path,
    ) as demo:
        wait_for_port(proxy_port, demo)
        direct = await _session(f"http://127.0.0.1:{upstream_port}/mcp", mode)
        proxied = await _session(f"http://127.0.0.1:{proxy_port}/mcp", mode)
        async with httpx.AsyncClient(timeout=10) as http:
            curl_like = await http.post(
                f"http://127.0.0.1:{proxy_port}/mcp",
                headers={"content-type": "application/json"},
                content=json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 2,
                        "method": "tools/call",
                        "params": {"name": "get_weather", "arguments": {"city": "London"}},
                    }
                ),
            )
            blocked = await http.post(
                f"http://127.0.0.1:{proxy_port}/mcp",
                headers={"content-type": "application/json"},
                content=json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 3,
                        "method": "tools/call",
                        "params": {"name": "delete_user", "arguments": {"user_id": "u-1"}},
                    }
                ),
            )
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=15)
    assert proxied == direct
    assert "get_weather" in proxied["tools"]
    assert proxied["missing_is_error"] is True
    assert curl_like.json()["result"]["content"][0]["text"] == "London: 18°C, light rain"
    assert blocked.status_code == 200
    error = blocked.json()["error"]
    assert error["code"] == -32001
    assert error["message"] == "Destructive operations are blocked by policy."
    assert error["data"]["reason"] == "policy_denied"
    assert error["data"]["rule"] == "block-destructive"
    assert error["data"]["suggestion"] == "Use a non-destructive alternative."
    audit_db = tmp_path / "helio-demo-audit.db"
    assert stat.S_IMODE(audit_db.stat().st_mode) == 0o600
    with sqlite3.connect(audit_db) as db:
        decisions = [
            row[0]
            # The demo's own scripted traffic (issue 13) deletes a user too, in its own session.
            for row in db.execute(
                "SELECT policy_decision FROM audit_records WHERE tool_name = 'delete_user' "
                "AND (session_id IS NULL OR session_id != 'helio-demo-traffic')"
            )
        ]
    assert decisions == ["deny"]
    assert f"Point any MCP client at: http://127.0.0.1:{proxy_port}/mcp" in output
    assert "curl -s -X POST" in output
    assert demo.returncode == 0


def test_start_prints_what_it_runs_and_stops_cleanly_on_sigterm(
    ports: tuple[int, int], tmp_path: Path
) -> None:
    proxy_port, upstream_port = ports
    config = tmp_path / "helio.yaml"
    config.write_text(
        f"version: '1'\nupstream:\n  url: 'http://127.0.0.1:{upstream_port}/mcp'\n"
        f"listen:\n  port: {proxy_port}\ndashboard:\n  enabled: false\n"
        f"audit:\n  path: '{tmp_path / 'audit.db'}'\n"
    )
    with running(helio("start", "-c", str(config))) as proxy:
        wait_for_port(proxy_port, proxy)
        health = httpx.get(f"http://127.0.0.1:{proxy_port}/healthz", timeout=5)
        proxy.send_signal(signal.SIGTERM)
        output, _ = proxy.communicate(timeout=15)
    assert health.json()["status"] == "ok"
    assert proxy.returncode == 0
    assert f"Helio proxy listening on http://127.0.0.1:{proxy_port}" in output
    assert f"Upstream: http://127.0.0.1:{upstream_port} (streamable-http)" in output  # no path or query
    assert f"Config: {config}" in output
    assert "Shutting down" in output


def test_start_with_a_port_in_use_fails_with_exit_3_and_says_why(
    ports: tuple[int, int], tmp_path: Path
) -> None:
    import socket

    proxy_port, _ = ports
    config = tmp_path / "helio.yaml"
    config.write_text(
        f"version: '1'\nupstream: {{url: 'http://127.0.0.1:9/mcp'}}\nlisten: {{port: {proxy_port}}}\ndashboard: {{enabled: false}}\n"
    )
    with socket.create_server(("127.0.0.1", proxy_port)):
        result = subprocess.run(
            helio("start", "-c", str(config)), capture_output=True, text=True, timeout=30, check=False
        )
    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1:{proxy_port}" in result.stderr
    assert "listen.port" in result.stderr


def test_start_with_an_invalid_config_exits_1_naming_the_line(tmp_path: Path) -> None:
    config = tmp_path / "helio.yaml"
    config.write_text("version: '1'\nupstream:\n  ur: 'http://x/mcp'\n")
    result = subprocess.run(
        helio("start", "-c", str(config)), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 1
    assert f"{config}:3: upstream.ur: unknown key 'ur'" in result.stderr


def test_demo_refuses_to_start_when_its_upstream_port_is_taken(
    ports: tuple[int, int], tmp_path: Path
) -> None:
    """Another server on the demo's upstream port would otherwise answer in its place."""
    import socket

    proxy_port, upstream_port = ports
    with socket.create_server(("127.0.0.1", upstream_port)):
        result = subprocess.run(
            helio(
                "demo",
                "--port",
                str(proxy_port),
                "--upstream-port",
                str(upstream_port),
                "--dashboard-port",
                str(free_port()),
                "--sdk-port",
                str(free_port()),
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
    assert result.returncode == 3
    assert (
        f"port {upstream_port} on 127.0.0.1 is already in use; choose another with --upstream-port"
        in result.stderr
    )


async def test_the_demo_holds_payments_until_approved_with_the_secret_it_printed(
    ports: tuple[int, int], tmp_path: Path
) -> None:
    proxy_port, upstream_port = ports
    dashboard_port = free_port()
    args = [
        "--port",
        str(proxy_port),
        "--upstream-port",
        str(upstream_port),
        "--dashboard-port",
        str(dashboard_port),
        "--sdk-port",
        str(free_port()),
    ]
    with running(helio("demo", *args), cwd=tmp_path) as demo:
        wait_for_port(proxy_port, demo)
        assert demo.stdout is not None
        seen: list[str] = []

        def printed_secret() -> str:
            while "this run's secret" not in (seen[-1] if seen else ""):
                seen.append(demo.stdout.readline())  # type: ignore[union-attr]
            return demo.stdout.readline().strip()  # type: ignore[union-attr]

        async with asyncio.timeout(30):
            secret = await asyncio.to_thread(printed_secret)
        operator = {"authorization": f"Bearer {secret}"}
        dashboard = f"http://127.0.0.1:{dashboard_port}/api/approvals"
        async with Client(f"http://127.0.0.1:{proxy_port}/mcp", mode="legacy") as client:
            payment = asyncio.create_task(client.call_tool("create_payment", {"amount": 5}))
            async with httpx.AsyncClient(timeout=10, headers=operator) as http:
                async with asyncio.timeout(20):
                    while not (  # noqa: ASYNC110 - polling another process, bounded
                        pending := (await http.get(dashboard, params={"status": "pending"})).json()["data"]
                    ):
                        await asyncio.sleep(0.05)
                wrong = await http.get(dashboard, headers={"authorization": "Bearer wrong"})
                approved = await http.post(f"{dashboard}/{pending[0]['id']}/approve", json={})
            async with asyncio.timeout(20):
                result = await payment
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=15)
    assert wrong.status_code == 401
    assert approved.json()["data"]["status"] == "approved"
    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["status"] == "created"
    assert demo.returncode == 0


def test_demo_refuses_to_start_when_its_sdk_port_is_taken_and_names_the_option(
    ports: tuple[int, int], tmp_path: Path
) -> None:
    import socket

    proxy_port, upstream_port = ports
    sdk_port = free_port()
    with socket.create_server(("127.0.0.1", sdk_port)):
        result = subprocess.run(
            helio(
                "demo",
                "--port",
                str(proxy_port),
                "--upstream-port",
                str(upstream_port),
                "--dashboard-port",
                str(free_port()),
                "--sdk-port",
                str(sdk_port),
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
    assert result.returncode == 3
    assert f"port {sdk_port} on 127.0.0.1 is already in use; choose another with --sdk-port" in result.stderr
