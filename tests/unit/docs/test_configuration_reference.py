"""docs/configuration.md is generated from the schema; they cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from helio_proxy.config.docgen import render

ROOT = Path(__file__).resolve().parents[3]


def test_configuration_reference_matches_the_schema() -> None:
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == render(), (
        "run: uv run python -m helio_proxy.config.docgen --write docs/configuration.md"
    )


def test_every_config_field_is_documented() -> None:
    text = render()
    assert "|  |\n" not in text.replace("| **required** |  |", "")
