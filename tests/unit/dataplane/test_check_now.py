"""The data plane's before-forward check without an await, when the tool list is known."""

from __future__ import annotations

from typing import Any

import pytest

from helio_proxy.config import parse_config_text
from helio_proxy.dataplane.inspector import DataPlane
from helio_proxy.dataplane.tools import ToolInventory
from helio_proxy.policy import BaselineCache

CONFIG = """
version: '1'
dashboard: {enabled: false}
upstream: {url: 'http://x/mcp'}
data_plane:
  mode: enforce
  scan: [{name: cards, detect: [card_number], scope: [arguments], action: redact}]
"""
ECHO = {
    "name": "echo",
    "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
}


def _plane(refreshed: list[str]) -> DataPlane:
    async def refresh() -> list[dict[str, Any]]:
        refreshed.append("listed")
        return [ECHO]

    baselines = BaselineCache()
    baselines.observe([ECHO])
    return DataPlane(baselines, None, inventory=ToolInventory(refresh))


@pytest.mark.parametrize(
    "arguments",
    [{"n": 7}, {"n": "seven"}, {"n": 1, "note": "card 4111 1111 1111 1111"}],
    ids=["valid", "invalid", "scanned"],
)
async def test_a_listed_tool_is_checked_now_as_check_call_would(arguments: dict[str, Any]) -> None:
    config = parse_config_text(CONFIG, env={})
    refreshed: list[str] = []
    plane = _plane(refreshed)
    assert plane.check_call_now(config, "echo", arguments) is None  # no list seen yet
    awaited = await plane.check_call(config, "echo", arguments)
    assert refreshed == ["listed"]
    counted = (dict(plane.stats.findings), dict(plane.stats.blocks))
    now = plane.check_call_now(config, "echo", arguments)
    assert now is not None
    assert (now.deny, now.facts, now.arguments, now.block_reason) == (
        awaited.deny,
        awaited.facts,
        awaited.arguments,
        awaited.block_reason,
    )
    assert refreshed == ["listed"]  # answered from the list already seen
    assert (now.deny is not None) == (arguments["n"] == "seven")
    # Counted for the metrics as check_call counts: the same again.
    twice = ({k: 2 * v for k, v in counted[0].items()}, {k: 2 * v for k, v in counted[1].items()})
    assert (dict(plane.stats.findings), dict(plane.stats.blocks)) == twice
    assert bool(counted[0]) == ("note" in arguments)


async def test_a_tool_not_on_the_list_is_left_to_check_call() -> None:
    config = parse_config_text(CONFIG, env={})
    plane = _plane([])
    await plane.check_call(config, "echo", {"n": 1})
    assert plane.check_call_now(config, "other", {}) is None
    blocked = await plane.check_call(config, "other", {})
    assert blocked.deny is not None
    assert blocked.deny.reason == "tool_not_found"
    off = parse_config_text(CONFIG + "  unknown_tools: 'off'\n", env={})
    assert plane.check_call_now(off, "other", {}) is not None  # nothing to look up
