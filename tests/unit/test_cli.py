"""The ``helio`` command line: init, validate, exit codes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from click.testing import CliRunner

from helio_proxy.cli import cli
from helio_proxy.config import load_config


def test_init_writes_a_valid_commented_config_with_a_fresh_256_bit_secret(tmp_path: Path) -> None:
    target = tmp_path / "helio.yaml"
    result = CliRunner().invoke(cli, ["init", "-o", str(target)])
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert text.startswith("# helio.yaml")
    secret = load_config(target).config.dashboard.api_secret
    assert secret is not None
    assert len(secret) == 64
    assert int(secret, 16) >= 0
    assert secret in result.output
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    second = CliRunner().invoke(cli, ["init", "-o", str(target), "-f"])
    assert load_config(target).config.dashboard.api_secret != secret
    assert second.exit_code == 0


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "helio.yaml"
    target.write_text("keep me")
    result = CliRunner().invoke(cli, ["init", "-o", str(target)])
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert target.read_text() == "keep me"


def test_validate_prints_counts(tmp_path: Path) -> None:
    target = tmp_path / "helio.yaml"
    target.write_text(
        "version: '1'\nupstream: {url: 'http://a/mcp'}\ndashboard: {enabled: false}\n"
        "policies:\n  rules:\n    - match: {tool: 'delete_*'}\n      action: deny\n"
        "budgets:\n  - {name: daily, limit: 100, contributors: [{match: {tool: pay}, field: $.amount}]}\n"
    )
    result = CliRunner().invoke(cli, ["validate", "-c", str(target)])
    assert result.exit_code == 0
    assert f"Config is valid: {target} (1 policy rules, 1 budgets)" in result.output


def test_validate_names_a_typo_with_path_and_line_and_exits_1(tmp_path: Path) -> None:
    target = tmp_path / "helio.yaml"
    target.write_text(
        "version: '1'\nupstream:\n  url: 'http://a/mcp'\n  transprt: sse\ndashboard: {enabled: false}\n"
    )
    result = CliRunner().invoke(cli, ["validate", "-c", str(target)])
    assert result.exit_code == 1
    assert (
        f"{target}:4: upstream.transprt: unknown key 'transprt' (did you mean 'transport'?)" in result.output
    )


def test_validate_on_a_missing_file_exits_1_and_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", "-c", str(tmp_path / "none.yaml")])
    assert result.exit_code == 1
    assert "helio init" in result.output


def test_init_force_over_a_world_readable_file_leaves_the_new_secret_mode_0600(tmp_path: Path) -> None:
    """Issue 22 point 10: -f kept the old file's 0644 while printing "(mode 0600)"."""
    target = tmp_path / "helio.yaml"
    target.write_text("old: config\n")
    target.chmod(0o644)
    result = CliRunner().invoke(cli, ["init", "-o", str(target), "-f"])
    assert result.exit_code == 0, result.output
    assert "(mode 0600)" in result.output
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert load_config(target).config.dashboard.api_secret in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["helio.yaml"]  # no temporary file left behind
