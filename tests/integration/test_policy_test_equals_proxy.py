"""``helio policy test`` answers what the running proxy does, call after call (issue 19, point 5).

The real proxy runs in process in front of the demo tools (official ``mcp`` SDK upstream), and the
official MCP client sends a table of calls covering every action (allow, deny, require_approval,
rate_limit, spend_limit, dry_run), every limit (rate, spend with valid and invalid amounts, a
budget) and the gates (evidence, prerequisites). Before each call, ``helio policy test`` is run
against the same config and store, in the same session: its ``Outcome`` must be what the proxy
then does with the call, limits included (the counters it reads are the ones the proxy charged).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
from click.testing import CliRunner
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from helio_proxy.cli import cli
from tests.harness import build_test_upstream, proxy_config, run_proxy, serve_asgi

SESSION = "table-run-1"
DASHBOARD_SECRET = "table-dashboard-secret-0123456789abcdef"

POLICIES = """
approval:
  timeout: 1s
policies:
  default: allow
  rules:
    - name: no-admin-deletes
      match: {tool: delete_user, input: {$.user_id: {eq: admin}}}
      action: deny
    - name: deletes-need-approval
      match: {tool: delete_user}
      action: require_approval
    - name: payments-capped
      match: {tool: create_payment}
      action: spend_limit
      limits: {max_spend: {field: $.amount, limit: 500, currency: USD, window: 24h}}
    - name: searches-per-session
      match: {tool: search_docs}
      action: rate_limit
      limits: {max_calls: 2, window: 1h, key: session}
    - name: refund-needs-lookup
      match: {tool: refund_order}
      requires: [lookup_order]
    - name: email-needs-consent
      match: {tool: send_email}
      evidence: {requires: [consent]}
    - name: simulate-reports
      match: {tool: build_report}
      action: dry_run
    - name: reads
      match: {annotations: {readOnlyHint: true}}
      action: allow
budgets:
  - name: eur-payments
    limit: 100
    currency: EUR
    contributors:
      - match: {tool: create_payment, input: {$.currency: {eq: EUR}}}
        field: $.amount
"""

TABLE: list[tuple[str, dict[str, Any]]] = [
    ("get_weather", {"city": "Oslo"}),
    ("search_docs", {"query": "refunds"}),
    ("search_docs", {"query": "limits"}),
    ("search_docs", {"query": "again"}),
    ("delete_user", {"user_id": "admin"}),
    ("delete_user", {"user_id": "u-17"}),
    ("create_payment", {"amount": 300}),
    ("create_payment", {"amount": 300}),
    ("create_payment", {"amount": "50"}),
    ("create_payment", {"amount": 600}),
    ("create_payment", {"amount": -5}),
    ("create_payment", {"currency": "GBP"}),
    ("create_payment", {"amount": 80, "currency": "EUR"}),
    ("create_payment", {"amount": 50, "currency": "EUR"}),
    ("create_payment", {"amount": 100}),
    ("create_payment", {"amount": 30}),
    ("refund_order", {"order_id": "A-1001"}),
    ("send_email", {"to": "a@example.com", "body": "hi"}),
    ("build_report", {"steps": 1}),
    ("lookup_order", {"order_id": "A-1001"}),
    ("get_weather", {"city": "Lima"}),
    ("search_docs", {"query": "still limited"}),
]


def predicted(config: Path, tool: str, arguments: dict[str, Any]) -> str:
    result = CliRunner().invoke(
        cli,
        [
            "policy",
            "test",
            "-c",
            str(config),
            "--tool",
            tool,
            "--args",
            json.dumps(arguments),
            "--session",
            SESSION,
        ],
    )
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.stdout.splitlines() if line.startswith("Outcome: ")]
    outcome = line.removeprefix("Outcome: ")
    # A held call waits for an operator; nobody answers here, so the proxy times it out.
    return "blocked (approval_timeout)" if outcome.startswith("held for approval") else outcome


async def observed_raw(http: httpx2.AsyncClient, url: str, tool: str, arguments: dict[str, Any]) -> str:
    """The proxy's answer to a plain JSON-RPC call (the MCP client refuses a dry-run's simulated
    result for a tool with an output schema, so the dry-run row is sent as is)."""
    body = {
        "jsonrpc": "2.0",
        "id": 99,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    response = await http.post(
        url,
        json=body,
        headers={"accept": "application/json, text/event-stream", "content-type": "application/json"},
    )
    payload = response.json()
    if "error" in payload:
        return f"blocked ({payload['error']['data']['reason']})"
    report = json.loads(payload["result"]["content"][0]["text"])
    assert report["dry_run"] is True
    return "dry run (nothing forwarded)"


async def observed(mcp: Client, tool: str, arguments: dict[str, Any]) -> str:
    try:
        result = await mcp.call_tool(tool, arguments)
    except MCPError as exc:
        error = exc
    else:
        assert result.is_error is False, result
        return "forwarded"
    assert error.code == -32001, error
    data: dict[str, Any] = error.data
    return f"blocked ({data['reason']})"


async def test_policy_test_prints_what_the_running_proxy_does_for_every_call_of_the_table(
    tmp_path: Path,
) -> None:
    upstream = build_test_upstream()
    async with serve_asgi(upstream.streamable_http_app(stateless_http=True, json_response=True)) as base:
        text = proxy_config(f"{base}/mcp", POLICIES, audit_path=str(tmp_path / "a.db")).replace(
            "dashboard:\n  enabled: false\n", f"dashboard:\n  port: 0\n  api_secret: '{DASHBOARD_SECRET}'\n"
        )
        config = tmp_path / "helio.yaml"
        config.write_text(text)
        rows: list[tuple[str, dict[str, Any], str, str]] = []
        async with (
            run_proxy(text) as app,
            httpx2.AsyncClient(headers={"x-helio-session-id": SESSION}, timeout=10) as http,
            Client(streamable_http_client(app.mcp_url, http_client=http)) as mcp,
        ):
            for tool, arguments in TABLE:
                before = predicted(config, tool, arguments)
                if tool == "build_report":
                    after = await observed_raw(http, app.mcp_url, tool, arguments)
                else:
                    after = await observed(mcp, tool, arguments)
                rows.append((tool, arguments, before, after))
    assert len(rows) >= 20
    assert [(t, a, b) for t, a, b, _ in rows] == [(t, a, p) for t, a, _, p in rows]
    outcomes = {after for *_, after in rows}
    assert outcomes >= {
        "forwarded",
        "dry run (nothing forwarded)",
        "blocked (policy_denied)",
        "blocked (approval_timeout)",
        "blocked (rate_limited)",
        "blocked (spend_limited)",
        "blocked (budget_exceeded)",
        "blocked (evidence_missing)",
        "blocked (dependency_missing)",
    }
