"""The evidence-key allowlist and producer map, derived from the current config snapshot."""

from __future__ import annotations

from helio_proxy.config import HelioConfig, parse_config_text
from helio_proxy.evidence import CurrentEvidenceIndex, evidence_allowlist, evidence_producers

BASE = "version: '1'\nupstream: {url: 'http://127.0.0.1:9/mcp'}\ndashboard: {enabled: false}\n"


def config(policies: str) -> HelioConfig:
    return parse_config_text(BASE + policies)


RULES = """
policies:
  rules:
    - match: {tool: orders.refund}
      evidence: {requires: [order_data, refund_policy]}
    - match: {tool: orders.cancel}
      evidence: {requires: [order_data]}
      requires: [orders.lookup]
    - match: {tool: orders.lookup}
      evidence: {produces: order_data, ttl: 10m}
    - match: {tool: 'orders.*'}
      evidence: {produces: order_data}
    - match: {tool: mail.send}
      action: deny
  shadow:
    - match: {tool: mail.send}
      evidence: {requires: [draft_reviewed]}
"""


def test_allowlist_is_every_key_some_enforced_or_shadow_rule_requires() -> None:
    assert evidence_allowlist(config(RULES)) == {"order_data", "refund_policy", "draft_reviewed"}


def test_produced_keys_are_not_allowlisted_unless_required() -> None:
    only_produces = config("policies:\n  rules:\n    - match: {tool: a}\n      evidence: {produces: k}\n")
    assert evidence_allowlist(only_produces) == frozenset()


def test_no_rules_means_an_empty_allowlist() -> None:
    assert evidence_allowlist(config("")) == frozenset()


def test_producers_map_each_key_to_the_first_rule_producing_it() -> None:
    assert evidence_producers(config(RULES)) == {"order_data": "orders.lookup"}


def test_current_index_follows_config_swaps() -> None:
    holder = {"config": config(RULES)}
    index = CurrentEvidenceIndex(lambda: holder["config"])
    first = index.get()
    assert index.get() is first  # cached while the snapshot is the same
    holder["config"] = config("")
    assert index.get().allowed_keys == frozenset()
