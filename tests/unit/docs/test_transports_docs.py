"""The stdio examples in docs/transports.md load: the upstream block, the wrap config, Claude Desktop's JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from helio_proxy.cli.main import cli
from helio_proxy.cli.wrap import wrap_config
from helio_proxy.config import parse_config_text

DOC = Path(__file__).resolve().parents[3] / "docs" / "transports.md"
TEXT = DOC.read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", TEXT, re.DOTALL | re.MULTILINE)


def test_every_upstream_section_example_is_valid_and_one_is_the_stdio_example() -> None:
    blocks = [b for b in _blocks("yaml") if b.startswith("upstream:")]
    upstreams = [
        parse_config_text(
            "version: '1'\ndashboard: {enabled: false}\n" + block,
            env={name: f"<{name}>" for name in re.findall(r"\$\{(\w+)\}", block)},
        ).upstream_list[0]
        for block in blocks
    ]
    assert len(upstreams) >= 2
    assert ("stdio", "npx") in [(upstream.transport, upstream.command) for upstream in upstreams]
    assert {"GITHUB_PERSONAL_ACCESS_TOKEN": "<GITHUB_TOKEN>"} in [upstream.env for upstream in upstreams]


def test_the_wrap_config_example_loads_with_the_command_as_its_upstream(tmp_path: Path) -> None:
    (block,) = [b for b in _blocks("yaml") if b.startswith("version:")]
    path = tmp_path / "helio.yaml"
    path.write_text(block, encoding="utf-8")
    loaded = wrap_config(["npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"], str(path))
    assert loaded.config.upstream_list[0].url == "stdio://server-filesystem"
    assert loaded.config.policies.rules[0].name == "no-deletes"


def test_the_claude_desktop_example_runs_helio_wrap_with_the_server_after_the_separator() -> None:
    (block,) = _blocks("json")
    server = json.loads(block)["mcpServers"]["filesystem"]
    args = server["args"]
    assert args[0] == "wrap"
    assert args[args.index("--") + 1 :][:2] == ["npx", "-y"]


@pytest.mark.parametrize("command", ["wrap"])
def test_the_cli_page_documents_the_command_and_its_help_runs(command: str) -> None:
    cli_page = (DOC.parent / "cli.md").read_text(encoding="utf-8")
    assert f"`helio {command} [-c FILE] -- COMMAND [ARGS...]`" in cli_page
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "stdin/stdout" in result.output


def test_every_complete_config_example_loads() -> None:
    complete = [b for b in _blocks("yaml") if re.search(r"^version:", b, re.MULTILINE) and "upstream" in b]
    assert complete
    for block in complete:
        config = parse_config_text(block, env={"HELIO_API_SECRET": "s" * 64})
        assert config.upstream_list, block
