"""``helio policy replay`` on the records a real proxy wrote (official ``mcp`` SDK peers).

Replaying the config that made the decisions changes nothing, whatever the kind of decision
(allow, a rule's deny, a destructive tool's deny from its baseline, a dry run); a changed config
flips exactly the calls it should.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from mcp import Client, MCPError

from helio_proxy.cli import cli
from tests.harness import audit_records, build_test_upstream, proxy_config, run_proxy, serve_asgi
from tests.integration.approval_support import approval_config, decide, held_ticket
from tests.integration.test_tool_baselines import redescribe_weather

RULES = """
policies:
  default: allow
  rules:
    - name: block-destructive
      match: {{annotations: {{destructiveHint: true}}}}
      action: deny
    - name: large-payments
      match: {{tool: create_payment, input: {{'$.amount': {{gt: {limit}}}}}}}
      action: deny
    - name: emails-dry-run
      match: {{tool: send_email}}
      action: {email}
"""


def _replay(config: Path) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["policy", "replay", "-c", str(config), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_replay_of_real_proxy_records_flips_only_what_the_new_rules_change(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    upstream = build_test_upstream()
    async with serve_asgi(upstream.streamable_http_app(stateless_http=True, json_response=True)) as base:
        text = proxy_config(f"{base}/mcp", RULES.format(limit=1000, email="dry_run"), audit_path=str(db))
        async with run_proxy(text) as app, Client(app.mcp_url) as client:
            await client.call_tool("get_weather", {"city": "Leeds"})
            for amount in (100, 700):
                await client.call_tool("create_payment", {"amount": amount})
            with pytest.raises(MCPError) as large:
                await client.call_tool("create_payment", {"amount": 1500})
            with pytest.raises(MCPError) as destructive:
                await client.call_tool("delete_user", {"user_id": "u-1"})
            # The simulated result has no structured content, which this client insists on for a
            # tool with an output schema; the call was still made and recorded.
            with pytest.raises(RuntimeError, match="output schema"):
                await client.call_tool("send_email", {"to": "a@example.com", "body": "hi"})
    assert large.value.error.data is not None
    assert large.value.error.data["rule"] == "large-payments"
    assert destructive.value.error.data is not None
    assert destructive.value.error.data["rule"] == "block-destructive"
    same = tmp_path / "helio.yaml"
    same.write_text(text)
    changed = tmp_path / "new.yaml"
    changed.write_text(
        proxy_config(f"{base}/mcp", RULES.format(limit=500, email="allow"), audit_path=str(db))
    )

    unchanged = _replay(same)
    flipped = _replay(changed)

    assert unchanged["calls"] == 6
    assert unchanged["before"] == {"allow": 3, "deny": 2, "dry_run": 1}
    assert unchanged["after"] == unchanged["before"]
    assert unchanged["flips"] == []
    assert [(f["tool"], f["before"]["decision"], f["after"]["decision"]) for f in flipped["flips"]] == [
        ("create_payment", "allow", "deny"),
        ("send_email", "dry_run", "allow"),
    ]
    assert flipped["flips"][0]["after"]["rule"] == "large-payments"
    assert flipped["rules"]["block-destructive"] == {"before": 1, "after": 1, "flips": 0}


GATED = """
policies:
  default: allow
  rules:
    - name: email-needs-lookup
      match: {tool: send_email}
      requires: [lookup_order]
"""
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


async def _call(
    http: httpx.AsyncClient, url: str, name: str, arguments: dict[str, Any], session: str | None
) -> None:
    headers = {**HEADERS, **({"x-helio-session-id": session} if session else {})}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    assert (await http.post(url, json=body, headers=headers)).status_code == 200


async def test_gates_replay_as_they_were_and_a_sessionless_call_never_passes_one(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    email = {"to": "a@example.com", "body": "hi"}
    upstream = build_test_upstream()
    async with serve_asgi(upstream.streamable_http_app(stateless_http=True, json_response=True)) as base:
        text = proxy_config(f"{base}/mcp", GATED, audit_path=str(db))
        async with run_proxy(text) as app, httpx.AsyncClient(timeout=10) as http:
            await _call(http, app.mcp_url, "send_email", email, "run-1")  # blocked: dependency_missing
            await _call(http, app.mcp_url, "lookup_order", {"order_id": "A-1001"}, "run-1")
            await _call(http, app.mcp_url, "send_email", email, "run-1")  # passes the gate
            await _call(http, app.mcp_url, "send_email", email, None)  # blocked: no session
            await _call(http, app.mcp_url, "get_weather", {"city": "Oslo"}, None)
    same = tmp_path / "helio.yaml"
    same.write_text(text)
    recorded = [(r["tool_name"], r["policy_decision"], r["block_reason"]) for r in audit_records(db)]
    assert recorded == [
        ("send_email", "deny", "dependency_missing"),
        ("lookup_order", "allow", None),
        ("send_email", "allow", None),
        ("send_email", "deny", "policy_denied"),
        ("get_weather", "allow", None),
    ]

    replayed = _replay(same)

    assert replayed["calls"] == 5
    assert replayed["flips"] == []
    assert replayed["rules"]["email-needs-lookup"] == {"before": 3, "after": 3, "flips": 0}
    # The passing call recorded what met its gate (evidence_chain.gate), so nothing is assumed.
    assert replayed["assumed_gates"] == 0


async def test_a_call_held_for_a_drifted_tool_replays_as_drifted(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    upstream = build_test_upstream()
    async with serve_asgi(upstream.streamable_http_app(stateless_http=True, json_response=True)) as base:
        text = approval_config(
            f"{base}/mcp",
            "policies:\n  default: allow\n  on_tool_drift: require_approval\n",
            audit_path=str(db),
        )
        async with run_proxy(text) as app, Client(app.mcp_url) as client:
            redescribe_weather(upstream)
            await client.list_tools(cache_mode="bypass")
            held = asyncio.create_task(client.call_tool("get_weather", {"city": "Leeds"}))
            ticket = await held_ticket(app)
            assert (await decide(app, ticket["id"], "approve")).status_code == 200
            async with asyncio.timeout(10):
                assert (await held).is_error is False
            await client.call_tool("search_docs", {"query": "refund"})
    same = tmp_path / "helio.yaml"
    same.write_text(text)
    recorded = [(r["tool_name"], r["policy_decision"], r["approval_status"]) for r in audit_records(db)]
    assert ("get_weather", "require_approval", "approved") in recorded

    replayed = _replay(same)

    assert replayed["calls"] == 2
    assert replayed["flips"] == []
    assert replayed["after"] == {"allow": 1, "require_approval": 1}
