"""docs/cli-reference.md is generated from the commands and is exactly what ``--help`` prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from helio_proxy.cli import cli
from helio_proxy.cli.docgen import contexts, main, render

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "cli-reference.md"
SECTION = re.compile(r"^## `(?P<path>[^`]+)`\n\n```text\n(?P<help>.*?)```\n", re.MULTILINE | re.DOTALL)


def test_the_cli_reference_matches_the_commands() -> None:
    assert PAGE.read_text() == render(), (
        "run: uv run python -m helio_proxy.cli.docgen --write docs/cli-reference.md"
    )


def test_every_command_has_a_section_holding_its_real_help_output() -> None:
    sections = {m["path"]: m["help"] for m in SECTION.finditer(PAGE.read_text())}
    commands = [context.command_path for _, context in contexts(cli)]
    assert sorted(sections) == sorted(commands)
    assert {"helio status", "helio audit tail", "helio approvals approve", "helio policy replay"} <= set(
        sections
    )
    runner = CliRunner(env={"COLUMNS": "120"})
    for path, shown in sections.items():
        printed = runner.invoke(cli, [*path.split()[1:], "--help"], prog_name="helio")
        assert printed.exit_code == 0, path
        assert printed.stdout == shown, path


@pytest.mark.parametrize("stale", [True, False])
def test_check_mode_exits_1_on_a_stale_page(tmp_path: Path, stale: bool) -> None:
    page = tmp_path / "cli-reference.md"
    page.write_text(render() + ("extra\n" if stale else ""))
    assert main(["--check", str(page)]) == (1 if stale else 0)
