"""``helio policy test``: one simulated call, explained; exit 0, or 1 on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helio_proxy.cli.main import cli

CONFIG = """version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
dashboard: {enabled: false}
policies:
  rules:
    - name: block-destructive
      match: {annotations: {destructiveHint: true}}
      action: deny
      feedback: {message: 'Destructive operations are blocked by policy.', suggestion: 'Use a non-destructive alternative.'}
    - name: refund-gate
      match: {tool: issue_refund}
      requires: [lookup_order]
    - name: large-payments
      match: {tool: create_payment, input: {'$.amount': {gt: 1000}}}
      action: deny
"""
SAFE = '{"destructiveHint": false}'


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "helio.yaml"
    path.write_text(CONFIG)
    return path


def run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["policy", "test", "-c", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


def error_of(output: str) -> dict[str, Any]:
    return json.loads(output[output.index("JSON-RPC error: ") + len("JSON-RPC error: ") :])


def test_a_blocked_call_prints_the_decision_the_rule_and_the_error_the_agent_gets(config: Path) -> None:
    code, out, _ = run(config, "--tool", "delete_user", "--args", '{"user_id": "u1"}')
    assert code == 0
    assert "Decision: deny (policy_denied)" in out
    assert "Matched rule: block-destructive (index 0)" in out
    assert "Annotations source: MCP defaults: tool unknown (no store yet" in out
    error = error_of(out)
    assert error["code"] == -32001
    assert error["message"] == "Destructive operations are blocked by policy."


def test_an_allowed_call_says_it_would_be_forwarded(config: Path) -> None:
    code, out, _ = run(config, "--tool", "create_payment", "--args", '{"amount": 10}', "--annotations", SAFE)
    assert code == 0
    assert "Decision: allow (default)" in out
    assert "Matched rule: none (default)" in out
    assert "Would be forwarded upstream." in out


def test_input_conditions_see_the_given_arguments(config: Path) -> None:
    code, out, _ = run(
        config, "--tool", "create_payment", "--args", '{"amount": 5000}', "--annotations", SAFE
    )
    assert code == 0
    assert "Matched rule: large-payments (index 2)" in out


def test_a_gate_is_checked_against_an_empty_session_with_or_without_session(config: Path) -> None:
    """Changed on purpose (issue 20): without --session the answer was session_unresolved, which
    contradicted docs/policies.md and hid what the gate needs."""
    _, with_session, _ = run(config, "--tool", "issue_refund", "--annotations", SAFE, "--session", "run-1")
    _, without, _ = run(config, "--tool", "issue_refund", "--annotations", SAFE)
    for out in (with_session, without):
        data = error_of(out)["data"]
        assert data["reason"] == "dependency_missing"
        assert data["missing_dependencies"] == ["lookup_order"]
        assert "policy_reason" not in data
    assert "Session: run-1, empty: no evidence, no earlier calls" in with_session
    assert "Session: (none given), empty: no evidence, no earlier calls" in without


def test_what_policies_md_says_policy_test_does_without_a_session_is_what_it_does(config: Path) -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "policies.md").read_text()
    claim = "`helio policy test` checks gates against an empty session"
    assert claim in " ".join(docs.split())
    _, without, _ = run(config, "--tool", "issue_refund", "--annotations", SAFE)
    _, empty, _ = run(config, "--tool", "issue_refund", "--annotations", SAFE, "--session", "empty")
    assert error_of(without)["data"] == error_of(empty)["data"]


@pytest.mark.parametrize(
    "args",
    [
        ["--tool", "t", "--args", "{not json"],
        ["--tool", "t", "--args", "[1, 2]"],
        ["--tool", "t", "--annotations", '"yes"'],
        ["--tool", ""],
    ],
)
def test_invalid_input_is_a_clear_error_with_exit_1(config: Path, args: list[str]) -> None:
    code, _, err = run(config, *args)
    assert code == 1
    assert err.startswith("Error: ")


def test_an_invalid_config_exits_1_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    path.write_text("version: '1'\nupstream: {ur: 'http://x/mcp'}\n")
    code, _, err = run(path, "--tool", "t")
    assert code == 1
    assert str(path) in err


@pytest.mark.parametrize(
    ("annotations", "complaint"),
    [
        ('{"readOnly": true}', "unknown hint 'readOnly'"),
        ('{"readOnlyHint": "true"}', 'readOnlyHint must be true or false (a JSON boolean), not "true"'),
        ('{"destructiveHint": 0}', "destructiveHint must be true or false"),
    ],
)
def test_unknown_or_mistyped_annotations_are_refused_not_dropped(
    config: Path, annotations: str, complaint: str
) -> None:
    code, out, err = run(config, "--tool", "create_payment", "--annotations", annotations)
    assert code == 1
    assert out == ""
    assert complaint in err


def test_a_title_among_the_annotations_is_accepted(config: Path) -> None:
    code, out, _ = run(
        config, "--tool", "create_payment", "--annotations", '{"title": "Pay", "destructiveHint": false}'
    )
    assert code == 0
    assert "Outcome: forwarded" in out


def test_a_require_approval_call_is_reported_as_held_with_its_channel(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    path.write_text(
        CONFIG.replace("dashboard: {enabled: false}", "dashboard: {api_secret: '" + "s" * 32 + "'}").replace(
            "  rules:\n",
            "  rules:\n    - {name: deletes, match: {tool: delete_user}, action: require_approval,"
            " approval: {channel: dashboard, timeout: 2m}}\n",
        )
    )
    code, out, _ = run(path, "--tool", "delete_user", "--annotations", SAFE)
    assert code == 0
    assert "Outcome: held for approval (channel 'dashboard', timeout 120s, quorum 1)" in out
