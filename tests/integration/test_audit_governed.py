"""Governance decisions reach the audit trail: blocked, gated, dry-run and allowed calls each
leave one record naming the decision, the reason and the rule; shadow decisions are recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from helio_proxy.audit.query import AuditFilter, fetch
from helio_proxy.store import create_store
from tests.harness import mcp_upstream, proxy_config, run_proxy

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
POLICY = """
policies:
  default: allow
  rules:
    - name: no-deletes
      match: {tool: 'delete_*'}
      action: deny
    - name: simulate-payments
      match: {tool: create_payment}
      action: dry_run
    - name: refund-needs-lookup
      match: {tool: send_email}
      requires: [lookup_order]
      feedback:
        message: 'Look the order up first.'
        suggestion: 'Call lookup_order, then retry.'
  shadow:
    - name: would-block-weather
      match: {tool: get_weather}
      action: deny
"""


async def _call(
    http: httpx.AsyncClient, url: str, request_id: int, name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    response = await http.post(url, json=body, headers={**HEADERS, "x-helio-session-id": "run-1"})
    assert response.status_code == 200
    return (
        response.json()
        if response.headers["content-type"] == "application/json"
        else _last_event(response.text)
    )


def _last_event(text: str) -> dict[str, Any]:
    import json

    return json.loads([line for line in text.splitlines() if line.startswith("data:")][-1][5:])


async def test_every_decision_is_one_record_with_its_reason_and_rule(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with (
        mcp_upstream(stateless=True) as upstream,
        run_proxy(proxy_config(upstream, POLICY, audit_path=str(db))) as app,
    ):
        async with httpx.AsyncClient(timeout=10) as http:
            denied = await _call(http, app.mcp_url, 1, "delete_user", {"user_id": "u1"})
            simulated = await _call(http, app.mcp_url, 2, "create_payment", {"amount": 5})
            gated = await _call(http, app.mcp_url, 3, "send_email", {"to": "a@b.c", "body": "hi"})
            allowed = await _call(http, app.mcp_url, 4, "get_weather", {"city": "Oslo"})
    assert denied["error"]["data"]["reason"] == "policy_denied"
    assert "result" in simulated
    assert gated["error"]["data"]["reason"] == "dependency_missing"
    assert "result" in allowed
    store = create_store(f"sqlite:///{db}")
    store.open_sync()
    try:
        records = store.read_sync(lambda c: fetch(c, AuditFilter(), order="oldest"))
    finally:
        store.close_sync()
    rows = [
        (
            r["tool_name"],
            r["policy_decision"],
            r["block_reason"],
            r["matched_rule"],
            r["matched_rule_index"],
            r["dry_run"],
        )
        for r in records
    ]
    assert rows == [
        ("delete_user", "deny", "policy_denied", "no-deletes", 0, False),
        ("create_payment", "dry_run", None, "simulate-payments", 1, True),
        ("send_email", "deny", "dependency_missing", "refund-needs-lookup", 2, False),
        ("get_weather", "allow", None, None, None, False),
    ]
    assert all(r["session_id"] == "run-1" and r["session_source"] == "header" for r in records)
    assert records[2]["evidence_chain"]["gate"]["missing_dependencies"] == ["lookup_order"]
    assert records[2]["evidence_chain"]["gate"]["suggestion"] == gated["error"]["data"]["suggestion"]
    assert gated["error"]["data"]["suggestion"] == "Call lookup_order, then retry."
    assert records[3]["metadata"]["shadow"]["decision"] == "deny"
    assert records[3]["metadata"]["shadow"]["rule"] == "would-block-weather"
    assert records[0]["upstream_latency_ms"] is None  # never forwarded
