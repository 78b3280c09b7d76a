"""Every YAML example in docs/policies.md loads, and the page names every operator, action and reason.

Convention (stated at the top of the page): a block with a top-level ``version`` is a whole
config; a block with a top-level ``policies`` is wrapped into :data:`WRAPPER`'s other sections;
any other block is a fragment of ``policies`` (``rules:``, ``default:``...) and is indented under
``policies:`` in :data:`WRAPPER`.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from helio_proxy.config import parse_config_text
from helio_proxy.config.policies import Condition, PoliciesConfig
from helio_proxy.policy import compile_policy
from helio_proxy.policy.feedback import BLOCK_REASONS

DOC = Path(__file__).resolve().parents[3] / "docs" / "policies.md"
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)

WRAPPER_HEAD = """version: '1'
upstream:
  url: 'http://127.0.0.1:8080/mcp'
environment: production
dashboard:
  api_secret: 'replace-with-a-32-byte-hex-secret-0000000000'
"""
WRAPPER = WRAPPER_HEAD + "policies:\n  default: allow\n"
POLICY_KEYS = {info.alias or name for name, info in PoliciesConfig.model_fields.items()}


def yaml_blocks() -> list[Any]:
    text = DOC.read_text(encoding="utf-8")
    return [
        pytest.param(match.group(1), id=f"line-{text.count(chr(10), 0, match.start()) + 1}")
        for match in BLOCK.finditer(text)
    ]


def as_config(block: str) -> str:
    data = yaml.safe_load(block)
    assert isinstance(data, dict), "a YAML example must be a mapping"
    if "version" in data:
        return block
    if "policies" in data:
        return WRAPPER_HEAD + block
    unknown = set(data) - POLICY_KEYS
    assert not unknown, f"fragment keys {unknown} are neither config nor policies keys"
    return WRAPPER_HEAD + "policies:\n" + textwrap.indent(block, "  ")


@pytest.mark.parametrize("block", yaml_blocks())
def test_every_yaml_example_in_the_policy_guide_is_a_valid_config(block: str) -> None:
    config = parse_config_text(as_config(block), source=str(DOC))
    compile_policy(config)


def test_the_page_shows_the_wrapper_the_examples_use() -> None:
    blocks = [param.values[0] for param in yaml_blocks()]
    assert WRAPPER in blocks


def test_the_page_documents_every_operator_action_and_block_reason() -> None:
    text = DOC.read_text(encoding="utf-8")
    operators = {info.alias or name for name, info in Condition.model_fields.items()}
    actions = {"allow", "deny", "require_approval", "rate_limit", "spend_limit", "dry_run"}
    reasons = set(BLOCK_REASONS)
    matchers = {"tool", "annotations", "input", "environment", "upstreams", "metadata", "any", "all", "not"}
    for word in sorted(operators | actions | reasons | matchers):
        assert f"`{word}`" in text, f"docs/policies.md does not mention `{word}`"
