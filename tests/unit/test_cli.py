"""The ``helio`` command line: init, validate, exit codes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click
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


def test_a_config_helio_init_just_wrote_validates_without_any_warning(tmp_path: Path) -> None:
    target = tmp_path / "helio.yaml"
    CliRunner().invoke(cli, ["init", "-o", str(target)])
    result = CliRunner().invoke(cli, ["validate", "-c", str(target)])
    assert result.exit_code == 0
    assert result.stdout == f"Config is valid: {target} (2 policy rules, 0 budgets)\n"
    assert result.stderr == ""


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


def test_wrap_with_neither_a_command_nor_a_config_is_bad_usage_exit_2() -> None:
    result = CliRunner().invoke(cli, ["wrap"])
    assert result.exit_code == 2
    assert "give the server's command after '--', or -c FILE" in result.stderr


def test_dash_f_means_force_in_every_command_that_has_it() -> None:
    meanings: dict[str, set[str]] = {}

    def walk(group: click.Group, prefix: str) -> None:
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, f"{prefix}{name} ")
                continue
            for param in command.params:
                for opt in param.opts:
                    if opt.startswith("-") and not opt.startswith("--"):
                        meanings.setdefault(opt, set()).add(param.name or "")

    walk(cli, "")
    assert meanings["-f"] == {"force"}
    assert all(len(names) == 1 for names in meanings.values()), meanings
