"""``helio validate`` (and every reload) warns about rules that cannot work, with file and line;
``--strict`` turns the warnings into a failing exit code (issue 19, point 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from helio_proxy.cli import cli
from helio_proxy.config import load_config, load_config_text
from helio_proxy.gateway.reloader import reload_snapshot
from helio_proxy.gateway.snapshot import Snapshot, Snapshots

HEAD = """version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
dashboard: {enabled: false}
"""

CLEAN = (
    HEAD
    + """policies:
  rules:
    - name: no-deletes
      match: {tool: 'delete_*'}
      action: deny
    - name: reads
      match: {annotations: {readOnlyHint: true}}
      action: allow
"""
)


def lint_of(text: str) -> list[str]:
    return list(load_config_text(text, path="helio.yaml").lint)


def test_a_clean_config_has_no_rule_warnings() -> None:
    assert lint_of(CLEAN) == []


def test_an_allow_on_every_tool_first_shadows_every_rule_below_it() -> None:
    text = (
        HEAD
        + """policies:
  rules:
    - name: everything
      match: {tool: '*'}
      action: allow
    - name: no-deletes
      match: {tool: delete_user}
      action: deny
    - name: payments
      match: {tool: create_payment, input: {$.amount: {gt: 10}}}
      action: deny
"""
    )
    assert lint_of(text) == [
        "helio.yaml:10: policies.rules[1].match: rule 'no-deletes' is never reached: rule 'everything' above "
        "it matches every call it matches (the first matching rule wins); move it up or narrow the earlier rule",
        "helio.yaml:13: policies.rules[2].match: rule 'payments' is never reached: rule 'everything' above "
        "it matches every call it matches (the first matching rule wins); move it up or narrow the earlier rule",
    ]


def test_a_glob_shadows_the_plain_names_it_covers_but_not_a_narrower_earlier_rule() -> None:
    text = (
        HEAD
        + """policies:
  rules:
    - name: narrow
      match: {tool: delete_user, input: {$.id: {eq: admin}}}
      action: deny
    - name: deletes
      match: {tool: 'delete_*'}
      action: require_approval
    - name: delete-user
      match: {tool: delete_user}
      action: deny
"""
    )
    warnings = lint_of(
        HEAD.replace("dashboard: {enabled: false}", "dashboard: {api_secret: '" + "s" * 32 + "'}")
        + text.removeprefix(HEAD)
    )
    assert [w.split(": ", 2)[1] for w in warnings] == ["policies.rules[2].match"]
    assert "rule 'delete-user' is never reached: rule 'deletes' above it" in warnings[0]


def test_evidence_no_rule_produces_with_the_sdk_off_can_never_be_met() -> None:
    text = (
        HEAD
        + """policies:
  rules:
    - name: refund-gate
      match: {tool: process_refund}
      evidence:
        requires: [order_data, {key: lookup, from: orders.lookup}]
    - match: {tool: orders.lookup}
      evidence: {produces: lookup}
"""
    )
    [warning] = lint_of(text)
    assert warning.startswith(
        "helio.yaml:9: policies.rules[0].evidence.requires[0]: evidence 'order_data' can never"
    )
    assert "sdk.enabled is false" in warning
    assert lint_of(text.replace(HEAD, HEAD + "sdk: {enabled: true}\n")) == []


@pytest.mark.parametrize(
    ("rule", "line", "path", "problem"),
    [
        (
            "{name: d, match: {tool: x}, action: deny, limits: {max_calls: 5, window: 1m}}",
            6,
            "policies.rules[0].limits",
            "'limits' is ignored: action 'deny' has no limits",
        ),
        (
            "{name: s, match: {tool: x}, action: spend_limit,\n"
            "       limits: {window: 1h, max_spend: {field: $.amount, limit: 500}}}",
            7,
            "policies.rules[0].limits.window",
            "limits.window is ignored by 'spend_limit' (its window is limits.max_spend.window, 24h here)",
        ),
        (
            "{name: r, match: {tool: x}, action: rate_limit,\n"
            "       limits: {max_calls: 5, window: 1m, max_spend: {field: $.a, limit: 5}}}",
            7,
            "policies.rules[0].limits.max_spend",
            "limits.max_spend is ignored by 'rate_limit' (use action 'spend_limit')",
        ),
        (
            "{name: a, match: {tool: x}, action: allow, approval: {channel: dashboard}}",
            6,
            "policies.rules[0].approval",
            "'approval' is ignored: action 'allow' never asks for approval",
        ),
        (
            "{name: f, match: {tool: x}, action: allow, feedback: {message: nope}}",
            6,
            "policies.rules[0].feedback",
            "'feedback' is never shown: an allow rule without a gate blocks nothing",
        ),
    ],
)
def test_keys_the_action_ignores_are_named_with_their_line(
    rule: str, line: int, path: str, problem: str
) -> None:
    text = HEAD + "policies:\n  rules:\n    - " + rule + "\n"
    assert lint_of(text) == [f"helio.yaml:{line}: {path}: {problem}"]


def test_a_quoted_number_is_a_warning_where_a_number_is_expected() -> None:
    text = (
        HEAD
        + """policies:
  rules:
    - name: pay
      match: {tool: create_payment, input: {$.amount: {gt: '100'}}}
      action: spend_limit
      limits:
        max_spend: {field: $.amount, limit: '500'}
budgets:
  - name: daily
    limit: "1000"
    contributors: [{match: {tool: create_payment}, field: $.amount}]
"""
    )
    assert lint_of(text) == [
        "helio.yaml:10: policies.rules[0].limits.max_spend.limit: '500' is a string where a number is "
        "expected; write 500 without quotes",
        "helio.yaml:7: policies.rules[0].match.input.$.amount.gt: '100' is a string where a number is "
        "expected; write 100 without quotes",
        "helio.yaml:13: budgets[0].limit: '1000' is a string where a number is expected; write 1000 without quotes",
    ]


def test_validate_prints_the_warnings_and_strict_makes_them_fatal(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    path.write_text(
        HEAD
        + "policies:\n  rules:\n    - {name: d, match: {tool: x}, action: deny, limits: {max_calls: 5, window: 1m}}\n"
    )
    relaxed = CliRunner().invoke(cli, ["validate", "-c", str(path)])
    assert relaxed.exit_code == 0
    assert f"Warning: {path}:6: policies.rules[0].limits: 'limits' is ignored" in relaxed.stderr
    strict = CliRunner().invoke(cli, ["validate", "--strict", "-c", str(path)])
    assert strict.exit_code == 1
    assert "--strict" in strict.stderr
    path.write_text(CLEAN)
    assert CliRunner().invoke(cli, ["validate", "--strict", "-c", str(path)]).exit_code == 0


def test_a_reload_logs_the_same_warnings(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    path.write_text(CLEAN)
    snapshots = Snapshots(Snapshot.of(load_config(path)))
    path.write_text(
        CLEAN + "    - {name: s, match: {tool: pay}, action: spend_limit,\n"
        "       limits: {window: 1h, max_spend: {field: $.amount, limit: 500}}}\n"
    )
    outcome = reload_snapshot(snapshots, path)
    assert outcome.applied
    assert outcome.lines[-1] == (
        f"Warning: {path}:13: policies.rules[2].limits.window: limits.window is ignored by 'spend_limit' "
        "(its window is limits.max_spend.window, 24h here)"
    )
    assert snapshots.current.loaded.lint == load_config(path).lint


def test_agent_settings_that_do_nothing_are_named() -> None:
    rule = "policies:\n  rules:\n    - name: bots\n      match: {agent: 'bot-*'}\n      action: deny\n"
    assert lint_of(HEAD + rule) == [
        "helio.yaml:7: policies.rules[0].match.agent: rule 'bots' matches no call: agents are not "
        "authenticated (set listen.auth)"
    ]
    auth = "listen:\n  auth:\n    tokens:\n      - {agent_id: a, token_hash: 'sha256:" + "0" * 64 + "'}\n"
    forwarding = HEAD.replace(
        "url: 'http://127.0.0.1:9/mcp'}", "url: 'http://127.0.0.1:9/mcp', forward_authorization: true}"
    )
    assert lint_of(forwarding + auth + rule) == [
        "helio.yaml:2: upstream.forward_authorization: relays nothing under listen.auth: the token Helio checks "
        "is never passed upstream (use upstream.headers or credentials for the upstream's own credential)"
    ]
