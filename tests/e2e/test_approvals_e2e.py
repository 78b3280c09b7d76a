"""Approvals in a real ``helio start`` process: the official MCP client's call hangs until an
operator decides over the REST API on the dashboard port."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, MCPError

from helio_proxy.operator.auth import secret_digest
from tests.e2e.conftest import free_port, helio, running, wait_for_port
from tests.harness import audit_records

pytestmark = pytest.mark.e2e

ALICE = "alice-e2e-secret-0123456789"
ADMIN = "a" * 40


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
    - name: approve-payments
      match: {{tool: create_payment}}
      action: require_approval
      approval: {{timeout: 2m}}
    - name: approve-email
      match: {{tool: send_email}}
      action: require_approval
      approval: {{timeout: 1s}}
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


async def _pending(http: httpx.AsyncClient) -> dict[str, Any]:
    """The one pending ticket, once there is one (bounded)."""
    async with asyncio.timeout(20):
        while True:
            listed = await http.get("/api/approvals", params={"status": "pending"})
            assert listed.status_code == 200
            if listed.json()["data"]:
                [ticket] = listed.json()["data"]
                return ticket
            await asyncio.sleep(0.05)


async def test_an_operator_approves_denies_or_lets_a_held_call_time_out(
    tmp_path: Path, demo_port: int
) -> None:
    proxy, dashboard, upstream = free_port(), free_port(), demo_port
    config = _config(tmp_path, proxy, dashboard, upstream)
    operator = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{dashboard}", headers={"authorization": f"Bearer {ALICE}"}, timeout=10
    )
    with running(helio("start", "-c", str(config)), cwd=tmp_path) as process:
        wait_for_port(proxy, process)
        wait_for_port(dashboard, process)
        async with operator, Client(f"http://127.0.0.1:{proxy}/mcp", mode="legacy") as client:
            payment = asyncio.create_task(
                client.call_tool("create_payment", {"amount": 250, "recipient": "acme"})
            )
            ticket = await _pending(operator)
            assert not payment.done()
            assert ticket["tool_input"] == {"amount": 250, "recipient": "acme"}
            approved = await operator.post(f"/api/approvals/{ticket['id']}/approve", json={"comment": "ok"})
            assert approved.status_code == 200
            async with asyncio.timeout(20):
                result = await payment

            refused = asyncio.create_task(client.call_tool("create_payment", {"amount": 99_999}))
            second = await _pending(operator)
            denied = await operator.post(f"/api/approvals/{second['id']}/deny", json={"reason": "too much"})
            assert denied.status_code == 200
            with pytest.raises(MCPError) as deny_error:
                async with asyncio.timeout(20):
                    await refused

            with pytest.raises(MCPError) as timeout_error:
                async with asyncio.timeout(20):
                    await client.call_tool("send_email", {"to": "a@example.com", "body": "hi"})
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert result.is_error is False
    assert result.structured_content == {
        "status": "created",
        "amount": "250.0",
        "currency": "GBP",
        "recipient": "acme",
    }
    assert deny_error.value.code == -32001
    assert deny_error.value.data["reason"] == "approval_denied"
    assert deny_error.value.data["denial_reason"] == "too much"
    assert timeout_error.value.code == -32001
    assert timeout_error.value.data["reason"] == "approval_timeout"
    assert timeout_error.value.data["retry_allowed"] is True

    calls = audit_records(tmp_path / "audit.db", record_kind="tool_call")
    outcomes = [(r["tool_name"], r["approval_status"], r["approved_by"], r["block_reason"]) for r in calls]
    assert outcomes == [
        ("create_payment", "approved", "alice", None),
        ("create_payment", "denied", None, "approval_denied"),
        ("send_email", "timeout", None, "approval_timeout"),
    ]
    assert calls[0]["approval_wait_ms"] > 0
    assert calls[0]["success"] is True
    assert calls[0]["evidence_chain"]["approval"]["ticket_id"] == ticket["id"]
