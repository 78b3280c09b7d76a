"""docs/operator-auth.md cannot drift: its YAML loads and its figures are the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helio_proxy.config import parse_config_text
from helio_proxy.operator.auth import LOGIN_FAILURE_LIMIT, LOGIN_FAILURE_WINDOW, SESSION_LIFETIME

DOC = Path(__file__).resolve().parents[3] / "docs" / "operator-auth.md"
TEXT = DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("block", re.findall(r"```yaml\n(.*?)```", TEXT, re.DOTALL))
def test_every_yaml_example_loads(block: str) -> None:
    config = parse_config_text(block, source=str(DOC), env={"HELIO_API_SECRET": "s" * 32})
    assert config.dashboard.api_secret == "s" * 32


def test_the_documented_limits_are_the_codes() -> None:
    assert f"**{LOGIN_FAILURE_LIMIT} login attempts per {int(LOGIN_FAILURE_WINDOW // 60)} minutes**" in TEXT
    assert f"lasts {int(SESSION_LIFETIME // 3600)} hours" in TEXT
