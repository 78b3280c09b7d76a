"""docs/evidence.md cannot rot: its YAML loads, and its block example is what the gate produces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from helio_proxy.config import HelioConfig, parse_config_text
from helio_proxy.evidence import EvidenceService, InMemorySessionStore
from helio_proxy.session import SessionIdentity

DOC = Path(__file__).resolve().parents[3] / "docs" / "evidence.md"
BASE = "version: '1'\nupstream: {url: 'http://127.0.0.1:9/mcp'}\ndashboard: {enabled: false}\n"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def load(fragment: str) -> HelioConfig:
    return parse_config_text(BASE + fragment, source="docs/evidence.md")


@pytest.mark.parametrize("fragment", blocks("yaml"))
def test_every_yaml_example_loads(fragment: str) -> None:
    load(fragment)


async def test_the_block_example_is_what_the_gate_check_answers() -> None:
    gate, producer = (yaml.safe_load(text) for text in blocks("yaml")[1:3])
    rules = gate["policies"]["rules"] + producer["policies"]["rules"]
    config = load(yaml.safe_dump({"policies": {"rules": rules}}))
    service = EvidenceService(InMemorySessionStore(), lambda: config)
    result = await service.check(
        "orders.refund", config.policies.rules[0], SessionIdentity("run-42", "header")
    )
    [example] = [json.loads(b)["error"]["data"] for b in blocks("json") if '"jsonrpc"' in b]
    assert example == {**example, **result.feedback_fields()}
