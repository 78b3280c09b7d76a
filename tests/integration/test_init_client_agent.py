"""After ``helio init --client``, an agent started from the rewritten config reaches the original
server through the proxy: the official ``mcp`` client launches the rewritten command line (as
Claude Desktop would), or connects to the URL a remote server's entry now holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters

from helio_proxy.cli import cli
from tests.harness import audit_records, build_test_upstream, run_proxy, serve_asgi

DEMO = [sys.executable, "-m", "helio_proxy.demo.server", "--transport", "stdio"]


def _rewrite(client: str, config: Path, helio_yaml: Path) -> dict[str, object]:
    result = CliRunner().invoke(
        cli, ["init", "--client", client, "--file", str(config), "-o", str(helio_yaml), "--yes"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(config.read_text())


async def test_an_agent_launched_from_the_rewritten_claude_desktop_config_is_governed(tmp_path: Path) -> None:
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(
        json.dumps(
            {"mcpServers": {"demo": {"command": DEMO[0], "args": DEMO[1:], "env": {"DEMO_FLAG": "1"}}}}
        )
    )
    helio_yaml = tmp_path / "helio" / "helio.yaml"
    rewritten = _rewrite("claude-desktop", config, helio_yaml)
    wrap_yaml = helio_yaml.with_name("helio-wrap.yaml")
    # An operator adds a rule to the generated policy file, as its comment invites.
    wrap_yaml.write_text(
        wrap_yaml.read_text().replace(
            "  rules: []\n",
            "  rules:\n  - name: no-deletes\n    match: {tool: delete_user}\n    action: deny\n",
        )
    )
    entry = rewritten["mcpServers"]["demo"]  # type: ignore[index]
    launched = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry["env"])

    async with Client(launched) as agent:
        tools = await agent.list_tools()
        weather = await agent.call_tool("get_weather", {"city": "Leeds"})
        with pytest.raises(MCPError) as blocked:
            await agent.call_tool("delete_user", {"user_id": "u-1"})

    assert "get_weather" in {tool.name for tool in tools.tools}
    assert weather.is_error is False
    assert weather.structured_content == {"result": "Leeds: 18°C, light rain"}
    assert blocked.value.code == -32001
    assert blocked.value.error.data["rule"] == "no-deletes"
    calls = audit_records(helio_yaml.with_name("helio-audit.db"), record_kind="tool_call")
    # (The client's opening server/discover probe is recorded too, as a rejected call.)
    governed = [r for r in calls if r["policy_decision"] != "rejected"]
    assert [(r["tool_name"], r["policy_decision"]) for r in governed] == [
        ("get_weather", "allow"),
        ("delete_user", "deny"),
    ]


async def test_a_remote_server_is_reached_at_its_mount_of_the_generated_config(tmp_path: Path) -> None:
    upstream = build_test_upstream()
    async with serve_asgi(upstream.streamable_http_app(stateless_http=True, json_response=True)) as base:
        config = tmp_path / "mcp.json"
        config.write_text(json.dumps({"mcpServers": {"Demo Server": {"url": f"{base}/mcp"}}}))
        helio_yaml = tmp_path / "helio.yaml"
        rewritten = _rewrite("cursor", config, helio_yaml)
        url = rewritten["mcpServers"]["Demo Server"]["url"]  # type: ignore[index]
        assert url == "http://127.0.0.1:3000/mcp/demo-server"
        # The generated ports are the defaults; the test runs it on free ones, as an operator may.
        text = helio_yaml.read_text().replace("port: 3000", "port: 0").replace("port: 3100", "port: 0")
        async with run_proxy(text) as app:
            mounted = url.replace("http://127.0.0.1:3000", app.base_url)
            async with Client(mounted) as agent:
                weather = await agent.call_tool("get_weather", {"city": "York"})
    assert weather.structured_content == {"result": "York: 18°C, light rain"}
    calls = audit_records(tmp_path / "helio-audit.db", record_kind="tool_call")
    assert [r["tool_name"] for r in calls] == ["get_weather"]
