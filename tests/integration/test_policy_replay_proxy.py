"""``helio policy replay`` on the records a real proxy wrote (official ``mcp`` SDK peers).

Replaying the config that made the decisions changes nothing, whatever the kind of decision
(allow, a rule's deny, a destructive tool's deny from its baseline, a dry run); a changed config
flips exactly the calls it should.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mcp import Client, MCPError

from helio_proxy.cli import cli
from tests.harness import build_test_upstream, proxy_config, run_proxy, serve_asgi

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
