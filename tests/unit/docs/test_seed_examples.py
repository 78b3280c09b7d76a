"""Every YAML example from the seed product pages loads with the real schema, unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from helio_proxy.cli import cli
from helio_proxy.config import parse_config_text

ROOT = Path(__file__).resolve().parents[3]
SEEDS = ROOT / "examples" / "seeds"
SEED_TEXT = ROOT.parent / "shared" / "reference" / "mission-seeds" / "helio-readme.txt"
ENV = {"HELIO_DASHBOARD_SECRET": "s" * 64}


def as_config(path: Path) -> str:
    """Whole configs as they are; ``rules:`` fragments under ``policies:`` of a minimal config."""
    text = path.read_text()
    if not text.startswith("rules:"):
        return text
    indented = "".join(f"  {line}" if line.strip() else line for line in text.splitlines(keepends=True))
    return (
        "version: '1'\nupstream:\n  url: 'http://localhost:8080/mcp'\n"
        "dashboard:\n  api_secret: '${HELIO_DASHBOARD_SECRET}'\npolicies:\n" + indented
    )


SEED_FILES = sorted(SEEDS.glob("*.yaml"))


def test_there_are_seed_examples() -> None:
    assert len(SEED_FILES) >= 6


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.name)
def test_seed_example_loads(path: Path) -> None:
    config = parse_config_text(as_config(path), source=path.name, env=ENV)
    assert config.version == "1"


@pytest.mark.parametrize("path", [p for p in SEED_FILES if p.name.startswith("readme")], ids=lambda p: p.name)
def test_readme_examples_are_verbatim_copies_of_the_product_page(path: Path) -> None:
    assert SEED_TEXT.exists(), (
        f"{SEED_TEXT} is missing: the shared/ reference folder sits beside the repository"
    )
    assert path.read_text().rstrip("\n") in SEED_TEXT.read_text()


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.name)
def test_helio_validate_says_each_seed_is_valid(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIO_DASHBOARD_SECRET", ENV["HELIO_DASHBOARD_SECRET"])
    target = tmp_path / path.name
    target.write_text(as_config(path))
    result = CliRunner().invoke(cli, ["validate", "-c", str(target)])
    assert result.exit_code == 0, result.output
    assert f"Config is valid: {target} (" in result.output


def test_gate_with_deny_action_in_the_seed_draws_a_warning() -> None:
    config = parse_config_text(as_config(SEEDS / "readme-rules-2.yaml"), env=ENV)
    assert any("can never pass" in w for w in config.warnings())
