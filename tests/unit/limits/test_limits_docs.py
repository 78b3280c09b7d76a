"""docs/limits.md cannot rot: its YAML loads, its reasons are the gate's, its block example is real."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from helio_proxy.config import parse_config_text
from helio_proxy.limits import blocks
from helio_proxy.limits.charges import Bucket, Charge
from helio_proxy.limits.ledger import Check
from helio_proxy.limits.windows import Usage, Window
from helio_proxy.policy import RateLimit, block_feedback

DOC = Path(__file__).resolve().parents[3] / "docs" / "limits.md"


def blocks_of(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_every_yaml_example_loads_on_the_minimal_config() -> None:
    minimal, *examples = blocks_of("yaml")
    assert parse_config_text(minimal, source=str(DOC)).version == "1"
    assert len(examples) >= 4
    for example in examples:
        config = parse_config_text(minimal + example, source=str(DOC))
        assert config.policies.rules or config.budgets


def test_every_limit_block_reason_and_invalid_amount_code_is_documented() -> None:
    text = DOC.read_text()
    for word in (
        "rate_limited",
        "spend_limited",
        "budget_exceeded",
        "session_unresolved",
        "limits_unavailable",
        "store_unavailable",
        "approval_unavailable",
        "missing",
        "not_a_number",
        "not_finite",
        "negative",
        "limit_warning",
        "budget_update",
        "budget_breached",
    ):
        assert f"`{word}`" in text, word


def test_the_block_example_is_what_a_full_rate_limit_answers() -> None:
    (example,) = blocks_of("json")
    documented = json.loads(example)["error"]
    limits = (
        parse_config_text(
            "version: '1'\nupstream: {url: 'http://x/mcp'}\ndashboard: {enabled: false}\npolicies:\n  rules:\n"
            "    - {name: searches, match: {tool: 'search_*'}, action: rate_limit, limits: {max_calls: 100, window: 1h}}\n"
        )
        .policies.rules[0]
        .limits
    )
    assert limits is not None
    decision = RateLimit(reason="rule_matched", rule="searches", rule_index=0, limits=limits)
    oldest = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    bucket = Bucket("rate", "searches", "fp", "tool", "search_docs")
    check = Check(Charge(bucket, Decimal(1), Decimal(100), Window(3600)), Usage(Decimal(100), 100, oldest))
    deny = blocks.rate_limited(decision, check, oldest)
    message, data = block_feedback(deny, "search_docs")
    assert (message, data) == (documented["message"], documented["data"])
