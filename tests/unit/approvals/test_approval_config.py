"""Approval settings in ``helio.yaml``: quorum, Slack approvers, and what startup/reload warn about."""

from __future__ import annotations

from pathlib import Path

import pytest

from helio_proxy.config import load_config, parse_config_text
from helio_proxy.errors import ConfigError
from helio_proxy.gateway.enforcement import fail_closed_warnings
from helio_proxy.gateway.reloader import reload_snapshot
from helio_proxy.gateway.snapshot import Snapshot, Snapshots

BASE = """
version: '1'
upstream: {url: 'http://127.0.0.1:1/mcp'}
dashboard:
  api_secret: 'ssssssssssssssssssssssssssssssss'
  operators:
    - {name: alice, secret_hash: 'sha256:AAA', roles: [approver]}
    - {name: victor, secret_hash: 'sha256:BBB', roles: [viewer]}
policies:
  rules:
    - name: approve
      match: {tool: pay}
      action: require_approval
""".replace("AAA", "a" * 64).replace("BBB", "b" * 64)


def test_quorum_defaults_to_one_and_can_be_set_globally_and_per_rule() -> None:
    config = parse_config_text(BASE, source="t.yaml")
    assert config.approval.quorum == 1
    per_rule = parse_config_text(
        BASE + "      approval: {quorum: 2}\napproval: {quorum: 1}\n", source="t.yaml"
    )
    assert per_rule.policies.rules[0].approval is not None
    assert per_rule.policies.rules[0].approval.quorum == 2
    with pytest.raises(ConfigError, match="quorum"):
        parse_config_text(BASE + "approval: {quorum: 0}\n", source="t.yaml")


def test_a_quorum_larger_than_the_possible_approvers_is_warned_about() -> None:
    # api_secret + alice can approve (victor only views): two.
    fine = parse_config_text(BASE + "approval: {quorum: 2}\n", source="t.yaml")
    assert not [w for w in fine.warnings() if "distinct approvers" in w]
    three = parse_config_text(BASE + "approval: {quorum: 3}\n", source="t.yaml")
    [warning] = [w for w in three.warnings() if "distinct approvers" in w]
    assert warning.startswith("policies.rules[0] needs 3 distinct approvers but only 2")
    open_slack = parse_config_text(
        BASE
        + "approval:\n  quorum: 3\n  channels:\n    - {type: slack, bot_token: x, signing_secret: y, channel: C1}\n",
        source="t.yaml",
    )
    assert open_slack.approver_count() is None
    assert not [w for w in open_slack.warnings() if "distinct approvers" in w]


def test_slack_channels_take_an_approver_allowlist_and_an_api_base() -> None:
    config = parse_config_text(
        BASE
        + "approval:\n  channels:\n"
        + "    - {type: slack, bot_token: x, signing_secret: y, channel: C1, approvers: [U1, U2],"
        + " api_base: 'http://127.0.0.1:9/api'}\n",
        source="t.yaml",
    )
    [slack] = config.approval.channels
    assert slack.type == "slack"
    assert slack.approvers == ["U1", "U2"]
    assert slack.api_base == "http://127.0.0.1:9/api"
    assert config.approver_count() == 4


def test_with_an_approval_gate_require_approval_draws_no_fail_closed_warning(tmp_path: Path) -> None:
    config = parse_config_text(BASE, source="t.yaml")
    assert fail_closed_warnings(config)  # without a gate it could only block
    assert fail_closed_warnings(config, approvals=True) == []
    path = tmp_path / "helio.yaml"
    path.write_text(BASE.replace("tool: pay", "tool: refund"))
    snapshots = Snapshots(Snapshot.of(load_config(path)))
    path.write_text(BASE)
    outcome = reload_snapshot(snapshots, path, approvals=True)
    assert outcome.applied
    assert not any("approval_unavailable" in line for line in outcome.lines)
