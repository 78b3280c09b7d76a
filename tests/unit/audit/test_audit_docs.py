"""docs/audit.md and docs/storage.md cannot drift from the code: their YAML loads, their lists match."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helio_proxy.audit.export import EXPORT_COLUMNS
from helio_proxy.audit.records import BLOCK_REASONS
from helio_proxy.audit.redact import DEFAULT_PATTERNS
from helio_proxy.config import parse_config_text
from helio_proxy.store.migrations import MIGRATIONS
from helio_proxy.store.tables import GOVERNANCE_TABLES

DOCS = Path(__file__).resolve().parents[3] / "docs"
MINIMAL = "version: '1'\nupstream:\n  url: 'http://127.0.0.1:8080/mcp'\ndashboard:\n  enabled: false\n"


def _yaml_blocks(name: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", (DOCS / name).read_text(), re.DOTALL)


@pytest.mark.parametrize("name", ["audit.md", "storage.md"])
def test_every_yaml_example_loads(name: str) -> None:
    blocks = _yaml_blocks(name)
    assert blocks
    for block in blocks:
        config = parse_config_text(MINIMAL + block, source=name, env={"HELIO_DB_PASSWORD": "pw"})
        assert config.version == "1"


def test_the_documented_columns_are_the_export_columns_in_order() -> None:
    text = (DOCS / "audit.md").read_text()
    table = text.split("## What a record holds", 1)[1].split("**Success rule.**", 1)[0]
    documented: list[str] = []
    for cell in re.findall(r"^\| (`[^|]+`) \|", table, re.MULTILINE):
        documented += re.findall(r"`([a-z0-9_]+)`", cell)
    assert documented == list(EXPORT_COLUMNS)


def test_the_redaction_defaults_and_block_reasons_are_all_documented() -> None:
    text = (DOCS / "audit.md").read_text()
    for pattern in DEFAULT_PATTERNS:
        assert f"`{pattern}`" in text
    for reason in BLOCK_REASONS:
        assert f"`{reason}`" in text


def test_storage_lists_every_table_and_migration() -> None:
    text = (DOCS / "storage.md").read_text()
    for table in GOVERNANCE_TABLES:
        assert f"`{table.name}`" in text
    for migration in MIGRATIONS:
        assert f"`{migration.name}`" in text
