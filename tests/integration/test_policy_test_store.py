"""``helio policy test`` decides with the annotations the running proxy baselined in the store.

A real proxy (the official ``mcp`` SDK upstream, the official client) runs first and baselines
the demo tools; then the command, through click's runner, is asked about the same call.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from mcp import Client, MCPError

from helio_proxy.cli import cli
from tests.harness import build_test_upstream, proxy_config, run_proxy, serve_asgi
from tests.integration.test_tool_baselines import redescribe_weather

RULES = """
policies:
  default: allow
  rules:
    - name: block-destructive
      match: {annotations: {destructiveHint: true}}
      action: deny
    - name: large-payments
      match: {tool: create_payment, input: {'$.amount': {gt: 1000}}}
      action: deny
      feedback: {message: 'Payments over 1000 need a human.'}
"""


def policy_test(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["policy", "test", "-c", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


async def test_policy_test_names_the_rule_the_running_proxy_applied_to_a_baselined_tool(
    tmp_path: Path,
) -> None:
    upstream = build_test_upstream()
    async with serve_asgi(upstream.streamable_http_app(stateless_http=True, json_response=True)) as base:
        text = proxy_config(f"{base}/mcp", RULES, audit_path=str(tmp_path / "audit.db"))
        config = tmp_path / "helio.yaml"
        config.write_text(text)
        async with run_proxy(text) as app, Client(app.mcp_url) as client:
            with pytest.raises(MCPError) as blocked:
                await client.call_tool("create_payment", {"amount": 2000})
    applied = blocked.value.error.data
    assert applied is not None
    assert applied["rule"] == "large-payments"

    out = policy_test(config, "--tool", "create_payment", "--args", '{"amount": 2000}')
    assert f"Matched rule: {applied['rule']} (index {applied['rule_index']})" in out
    assert "destructiveHint=false" in out
    assert "Annotations source: from the store (baseline of 20" in out
    assert "first seen" in out
    assert "Decision: deny (policy_denied)" in out

    unknown = policy_test(config, "--tool", "process_refund", "--args", '{"amount": 2000}')
    assert "Matched rule: block-destructive (index 0)" in unknown
    assert "Annotations source: MCP defaults: tool unknown (no baseline for it in" in unknown

    what_if = policy_test(config, "--tool", "create_payment", "--annotations", '{"destructiveHint": true}')
    assert "Matched rule: block-destructive (index 0)" in what_if
    assert "Annotations source: given with --annotations" in what_if


async def test_policy_test_reports_a_drifted_tool_as_the_proxy_blocks_it(tmp_path: Path) -> None:
    upstream = build_test_upstream()
    async with serve_asgi(upstream.streamable_http_app(stateless_http=True, json_response=True)) as base:
        text = proxy_config(f"{base}/mcp", RULES, audit_path=str(tmp_path / "audit.db"))
        config = tmp_path / "helio.yaml"
        config.write_text(text)
        async with run_proxy(text) as app, Client(app.mcp_url) as client:
            redescribe_weather(upstream)
            await client.list_tools(cache_mode="bypass")
            with pytest.raises(MCPError) as blocked:
                await client.call_tool("get_weather", {"city": "Leeds"})
    applied = blocked.value.error.data
    assert applied is not None
    assert applied["reason"] == "tool_definition_drift"

    out = policy_test(config, "--tool", "get_weather", "--args", '{"city": "Leeds"}')
    assert "DRIFTED (description) since 20" in out
    assert "tool_definition_drift" in out
