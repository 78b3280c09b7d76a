"""``helio wrap``'s config: the command becomes the upstream; without a file, allow and audit locally."""

from __future__ import annotations

from pathlib import Path

import pytest

from helio_proxy.cli.wrap import upstream_name, wrap_config
from helio_proxy.errors import ConfigError
from helio_proxy.gateway.reloader import reload_snapshot
from helio_proxy.gateway.snapshot import Snapshot, Snapshots


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["python", "tests/peers/everything_server.py", "--transport", "stdio"], "everything_server"),
        (["python3.12", "-m", "helio_proxy.demo.server"], "helio_proxy.demo.server"),
        (["npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"], "server-filesystem"),
        (["uv", "run", "server.py"], "server"),
        (["/usr/local/bin/My Server"], "my-server"),
    ],
)
def test_the_upstream_is_named_after_the_script_or_the_program(command: list[str], name: str) -> None:
    assert upstream_name(command) == name


def test_without_a_file_every_call_is_allowed_and_audited_to_the_working_directory() -> None:
    loaded = wrap_config(["python", "server.py", "--flag"], None)
    config = loaded.config
    assert config.policies.default == "allow"
    assert config.policies.rules == []
    assert not config.dashboard.enabled
    assert not config.sdk.enabled
    assert config.audit.path == "./helio-audit.db"
    upstream = config.upstream_list[0]
    assert (upstream.url, upstream.transport, upstream.command, upstream.args) == (
        "stdio://server",
        "stdio",
        "python",
        ["server.py", "--flag"],
    )


def test_a_files_upstreams_are_replaced_by_the_command_and_the_rest_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    path.write_text(
        "version: '1'\ndashboard: {enabled: false}\n"
        "upstreams:\n  - {name: a, url: 'http://a/mcp'}\n  - {name: b, url: 'http://b/mcp'}\n"
        "policies:\n  default: deny\n"
    )
    config = wrap_config(["srv"], str(path)).config
    assert config.upstreams is None
    assert [u.command for u in config.upstream_list] == ["srv"]
    assert config.policies.default == "deny"


def test_an_invalid_file_is_a_config_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    path.write_text("version: '1'\npolicies:\n  defualt: allow\n")
    with pytest.raises(ConfigError, match=r"helio.yaml:3: policies.defualt"):
        wrap_config(["srv"], str(path))


def test_a_hot_reload_keeps_the_command_as_the_upstream_and_applies_the_new_policies(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    head = "version: '1'\ndashboard: {enabled: false}\n"
    path.write_text(head + "policies:\n  default: allow\n")
    snapshots = Snapshots(Snapshot.of(wrap_config(["srv", "--stdio"], str(path))))
    path.write_text(head + "policies:\n  default: deny\n")
    outcome = reload_snapshot(snapshots, path)
    assert outcome.applied, outcome.lines
    assert not [line for line in outcome.lines if "needs a restart" in line]
    config = snapshots.current.config
    assert config.policies.default == "deny"
    assert (config.upstream_list[0].command, config.upstream_list[0].args) == ("srv", ["--stdio"])
    path.write_text(head + "policies:\n  default: allow\n")
    assert reload_snapshot(snapshots, path).applied  # and again: the replacement is kept


def test_without_a_command_the_files_own_single_upstream_is_governed(tmp_path: Path) -> None:
    path = tmp_path / "remote.yaml"
    path.write_text(
        "version: '1'\nupstream:\n  url: 'http://127.0.0.1:9/sse'\n  transport: sse\ndashboard: {enabled: false}\n",
        encoding="utf-8",
    )
    loaded = wrap_config([], str(path))
    [upstream] = loaded.config.upstream_list
    assert (upstream.url, upstream.transport) == ("http://127.0.0.1:9/sse", "sse")


def test_without_a_command_a_file_is_needed_and_it_must_name_one_upstream(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give the server's command after '--'"):
        wrap_config([], None)
    several = tmp_path / "several.yaml"
    several.write_text(
        "version: '1'\ndashboard: {enabled: false}\nupstreams:\n"
        "  - {name: a, url: 'http://127.0.0.1:9/mcp'}\n  - {name: b, url: 'http://127.0.0.1:8/mcp'}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="serves one upstream"):
        wrap_config([], str(several))
