"""Terminal operations against a real ``helio start``: ``helio status``, ``helio audit tail --follow``,
``helio approvals list|approve|deny|break-glass``, each run as its own process."""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import IO

import pytest
from mcp import Client, MCPError

from helio_proxy.operator.auth import secret_digest
from tests.e2e.conftest import demo_upstream, free_port, helio, running, wait_for_port
from tests.harness import audit_records

pytestmark = pytest.mark.e2e

ALICE = "alice-e2e-secret-0123456789"
ADMIN = "a" * 40
CLI_SECONDS = 30


def _config(tmp_path: Path, proxy: int, dashboard: int, upstream: int) -> Path:
    path = tmp_path / "helio.yaml"
    path.write_text(
        f"""version: '1'
upstream:
  url: 'http://127.0.0.1:{upstream}/mcp'
listen:
  port: {proxy}
policies:
  rules:
    - name: block-destructive
      match: {{annotations: {{destructiveHint: true}}}}
      action: deny
    - name: approve-payments
      match: {{tool: create_payment}}
      action: require_approval
      approval: {{timeout: 2m, quorum: 2}}
audit:
  path: '{tmp_path / "audit.db"}'
dashboard:
  port: {dashboard}
  api_secret: '{ADMIN}'
  operators:
    - {{name: alice, secret_hash: '{secret_digest(ALICE)}', roles: [approver]}}
"""
    )
    return path


def cli(*args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HELIO_API_SECRET"}
    if secret is not None:
        env["HELIO_API_SECRET"] = secret
    return subprocess.run(
        helio(*args), capture_output=True, text=True, timeout=CLI_SECONDS, env=env, check=False
    )


async def _pending_ids(config: Path, count: int) -> list[str]:
    """Ids of the pending tickets once there are ``count`` (bounded), read with ``approvals list``."""
    async with asyncio.timeout(30):
        while True:
            listed = await asyncio.to_thread(cli, "approvals", "list", "-c", str(config), secret=ALICE)
            assert listed.returncode == 0, listed.stderr
            lines = listed.stdout.splitlines()
            if len(lines) == count:
                return [line.split()[0] for line in lines]
            await asyncio.sleep(0.1)


async def test_an_operator_lists_and_decides_approvals_from_the_terminal(
    tmp_path: Path, demo_port: int
) -> None:
    proxy, dashboard, upstream = free_port(), free_port(), demo_port
    config = _config(tmp_path, proxy, dashboard, upstream)
    with running(helio("start", "-c", str(config)), cwd=tmp_path) as process:
        wait_for_port(proxy, process)
        wait_for_port(dashboard, process)
        async with Client(f"http://127.0.0.1:{proxy}/mcp", mode="legacy") as client:
            first = asyncio.create_task(client.call_tool("create_payment", {"amount": 250}))
            [ticket] = await _pending_ids(config, 1)

            # Four refusals that change nothing: run side by side, each still its own process.
            no_secret, wrong, not_admin, unknown = await asyncio.gather(
                asyncio.to_thread(cli, "approvals", "approve", ticket, "-c", str(config)),
                asyncio.to_thread(cli, "approvals", "approve", ticket, "-c", str(config), secret="not-it"),
                asyncio.to_thread(
                    cli, "approvals", "break-glass", ticket, "-c", str(config), "--reason", "x", secret=ALICE
                ),
                asyncio.to_thread(
                    cli, "approvals", "approve", "no-such-ticket", "-c", str(config), secret=ALICE
                ),
            )

            one = cli("approvals", "approve", ticket, "-c", str(config), "--comment", "ok", secret=ALICE)
            twice = cli("approvals", "approve", ticket, "-c", str(config), secret=ALICE)
            listed = cli("approvals", "list", "-c", str(config), secret=ALICE)
            assert not first.done()
            glass = cli(
                "approvals", "break-glass", ticket, "-c", str(config), "--reason", "month end", secret=ADMIN
            )
            async with asyncio.timeout(20):
                released = await first

            second = asyncio.create_task(client.call_tool("create_payment", {"amount": 99_999}))
            [other] = await _pending_ids(config, 1)
            denied = cli("approvals", "deny", other, "-c", str(config), "--reason", "too much", secret=ALICE)
            with pytest.raises(MCPError) as refused:
                async with asyncio.timeout(20):
                    await second
            history = cli("approvals", "list", "-c", str(config), "--status", "all", secret=ALICE)
        process.terminate()
        process.communicate(timeout=20)

    assert no_secret.returncode == 1
    assert "HELIO_API_SECRET is not set: export HELIO_API_SECRET=" in no_secret.stderr
    assert wrong.returncode == 1
    assert "refused the credentials" in wrong.stderr
    assert not_admin.returncode == 1
    assert "lacks the 'admin' role" in not_admin.stderr
    assert unknown.returncode == 1
    assert "no approval ticket no-such-ticket" in unknown.stderr

    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith(f"{ticket}  pending  create_payment")
    assert "approvals=1/2" in one.stdout
    assert twice.returncode == 1  # the same operator cannot count twice towards a quorum
    assert listed.stdout.count(ticket) == 1
    assert glass.returncode == 0, glass.stderr
    assert f"Ticket {ticket} is now break_glass by api_secret" in glass.stderr
    assert released.is_error is False

    assert denied.returncode == 0, denied.stderr
    assert f"Ticket {other} is now denied by alice" in denied.stderr
    assert refused.value.data["reason"] == "approval_denied"
    assert refused.value.data["denial_reason"] == "too much"
    assert {line.split()[1] for line in history.stdout.splitlines()} == {"consumed", "denied"}

    calls = audit_records(tmp_path / "audit.db", record_kind="tool_call")
    assert [(r["approval_status"], r["block_reason"]) for r in calls] == [
        ("break_glass", None),
        ("denied", "approval_denied"),
    ]


async def test_status_reports_a_running_proxy_and_names_what_is_down(tmp_path: Path) -> None:
    proxy, dashboard, upstream = free_port(), free_port(), free_port()
    config = _config(tmp_path, proxy, dashboard, upstream)
    with demo_upstream(upstream, tmp_path / "upstream.log"):
        with running(helio("start", "-c", str(config)), cwd=tmp_path) as process:
            wait_for_port(proxy, process)
            wait_for_port(dashboard, process)
            async with Client(f"http://127.0.0.1:{proxy}/mcp", mode="legacy") as client:
                assert (await client.call_tool("get_weather", {"city": "Leeds"})).is_error is False
                held = asyncio.create_task(client.call_tool("create_payment", {"amount": 5}))
                await _pending_ids(config, 1)
                up = await asyncio.to_thread(cli, "status", "-c", str(config))
                records = audit_records(tmp_path / "audit.db")  # the held call is not recorded yet
                held.cancel()
            process.terminate()
            process.communicate(timeout=20)
        proxy_down = cli("status", "-c", str(config))
    both_down = cli("status", "-c", str(config))
    lines = dict(line.split(":", 1) for line in up.stdout.splitlines())
    assert up.returncode == 0, up.stdout
    assert lines["MCP listener"].strip() == f"http://127.0.0.1:{proxy}/mcp up"
    assert lines["Dashboard API"].strip() == f"http://127.0.0.1:{dashboard}/api/ up"
    assert lines["SDK sideband"].strip() == "disabled (sdk.enabled: false)"
    assert lines["Upstream"].strip() == f"http://127.0.0.1:{upstream}/mcp (streamable-http) reachable"
    assert lines["Rules"].strip() == "2 loaded (default: allow)"
    assert lines["Pending approvals"].strip() == "1 (decide: helio approvals list)"
    assert lines["Kill switch"].strip() == "off"
    head = records[-1]
    assert lines["Audit chain head"].strip().startswith(f"record {head['seq']}, hash {head['hash'][:16]}")
    assert lines["Store"].strip().endswith(f", {len(records)} audit records")

    assert proxy_down.returncode == 1
    down = dict(line.split(":", 1) for line in proxy_down.stdout.splitlines())
    assert down["MCP listener"].strip().startswith(f"http://127.0.0.1:{proxy} DOWN (")
    assert "start it: helio start" in down["MCP listener"]
    assert down["Upstream"].strip().endswith("reachable")
    assert both_down.returncode == 1
    assert "UNREACHABLE" in dict(line.split(":", 1) for line in both_down.stdout.splitlines())["Upstream"]


def _lines(stream: IO[str]) -> queue.Queue[str]:
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            found.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return found


async def test_audit_tail_follow_prints_each_record_as_the_proxy_writes_it(
    tmp_path: Path, demo_port: int
) -> None:
    proxy, dashboard, upstream = free_port(), free_port(), demo_port
    config = _config(tmp_path, proxy, dashboard, upstream)
    with running(helio("start", "-c", str(config)), cwd=tmp_path) as process:
        wait_for_port(proxy, process)
        async with Client(f"http://127.0.0.1:{proxy}/mcp", mode="legacy") as client:
            await client.call_tool("get_weather", {"city": "Leeds"})
            with running(helio("audit", "tail", "--follow", "-n", "1", "-c", str(config))) as tail:
                assert tail.stdout is not None
                seen = _lines(tail.stdout)
                assert "get_weather  allow" in seen.get(timeout=20)
                assert seen.get(timeout=20).startswith("Following ")  # stderr, merged by running()
                with pytest.raises(MCPError):
                    await client.call_tool("delete_user", {"user_id": "u-1"})
                await client.call_tool("search_docs", {"query": "refund"})
                blocked = seen.get(timeout=20)
                searched = seen.get(timeout=20)
                tail.terminate()
                tail.wait(timeout=20)
                tail.stdout.close()
            with running(
                helio(
                    "audit", "tail", "--follow", "-n", "0", "--decision", "deny", "--json", "-c", str(config)
                )
            ) as denials:
                assert denials.stdout is not None
                only = _lines(denials.stdout)
                assert only.get(timeout=20).startswith("Following ")
                await client.call_tool("get_weather", {"city": "York"})
                with pytest.raises(MCPError):
                    await client.call_tool("delete_user", {"user_id": "u-2"})
                denial = only.get(timeout=20)
                assert only.empty()
                denials.terminate()
                denials.wait(timeout=20)
                denials.stdout.close()
        process.terminate()
        process.communicate(timeout=20)
    assert "delete_user  deny  policy_denied  rule=block-destructive" in blocked
    assert "search_docs  allow" in searched
    assert '"tool_name":"delete_user"' in denial
    assert '"user_id":"u-2"' in denial
