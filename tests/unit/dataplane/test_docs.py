"""Every YAML example in docs/data-plane.md loads with the real schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helio_proxy.config import parse_config_text

PAGE = Path(__file__).parents[3] / "docs" / "data-plane.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def test_the_page_has_its_examples() -> None:
    assert len(BLOCKS) == 5


@pytest.mark.parametrize("block", BLOCKS)
def test_each_example_is_a_valid_config(block: str) -> None:
    config = parse_config_text(block + "dashboard: {enabled: false}\n", source="docs/data-plane.md")
    assert config.version == "1"
