"""Which mode a check runs in: policy rule > ``data_plane.tools`` > upstream > global."""

from __future__ import annotations

from helio_proxy.config import parse_config_text
from helio_proxy.dataplane.inspector import Plan

CONFIG = """
version: '1'
dashboard: {enabled: false}
upstreams:
  - {name: pay, url: 'http://x/mcp', data_plane: {input_schema: 'off', unknown_tools: warn}}
data_plane:
  mode: enforce
  tools: [{tools: ['refund_*'], input_schema: enforce}]
policies:
  rules:
    - {name: plain, match: {tool: refund_small}, action: allow}
    - name: lenient
      match: {tool: 'refund_*'}
      action: allow
      data_plane:
        input_schema: warn
        scan: [{name: cards, detect: [card_number], scope: [results], action: redact}]
    - {name: quiet, match: {tool: '*'}, action: allow, data_plane: {mode: 'off'}}
"""


def test_a_rule_wins_over_the_tool_glob_the_upstream_and_the_global_mode() -> None:
    plan = Plan(parse_config_text(CONFIG), "pay")
    assert plan.modes("create") == {
        "input_schema": "off",
        "output_schema": "enforce",
        "unknown_tools": "warn",
    }
    assert plan.modes("refund_big")["input_schema"] == "enforce"  # tool glob over upstream
    assert plan.modes("refund_big", 1)["input_schema"] == "warn"  # rule over tool glob
    # A rule's unset checks inherit; its `mode` sets every check it does not name.
    assert plan.modes("refund_big", 1)["unknown_tools"] == "warn"
    assert plan.modes("create", 2) == {"input_schema": "off", "output_schema": "off", "unknown_tools": "off"}
    # A rule without data_plane settings changes nothing.
    assert plan.modes("refund_small", 0) == plan.modes("refund_small")
    assert plan.rule_name(1) == "lenient"


def test_a_rules_scan_rules_apply_only_to_its_calls_and_inherit_its_mode() -> None:
    config = parse_config_text(CONFIG.replace("input_schema: warn\n", "mode: warn\n"))
    plan = Plan(config, "pay")
    assert plan.rules_for("refund_big", "results") == ()
    (rule,) = plan.rules_for("refund_big", "results", 1)
    assert (rule.name, rule.action) == ("cards", "flag")  # the rule's warn turns redact into flag
    assert plan.rules_for("refund_big", "arguments", 1) == ()
