"""The self-repair feedback of every block reason (DESIGN.md section 5)."""

from collections.abc import Callable

from helio_proxy.config.policies import Feedback
from helio_proxy.policy import (
    Allow,
    CallFacts,
    CompiledPolicy,
    DecisionContext,
    Deny,
    DryRun,
    Hints,
    ToolFacts,
)
from helio_proxy.policy.feedback import block_feedback, simulation_report

PolicyFactory = Callable[..., CompiledPolicy]

BASE_KEYS = {"blocked", "reason", "rule", "rule_index", "action", "suggestion", "retry_allowed"}


def test_a_rule_deny_carries_the_rules_message_suggestion_and_policy_reason(
    make_policy: PolicyFactory,
) -> None:
    policy = make_policy(
        [
            {"match": {"tool": "x"}, "action": "allow"},
            {
                "name": "no-email",
                "match": {"tool": "send_email"},
                "action": "deny",
                "feedback": {"message": "Email sending is disabled.", "suggestion": "Contact your admin."},
            },
        ]
    )
    decision = policy.decide(CallFacts("send_email", {}))
    assert isinstance(decision, Deny)
    message, data = block_feedback(decision, "send_email")
    assert message == "Email sending is disabled."
    assert data == {
        "blocked": True,
        "reason": "policy_denied",
        "rule": "no-email",
        "rule_index": 1,
        "action": "deny",
        "suggestion": "Contact your admin.",
        "retry_allowed": False,
        "policy_reason": "rule_deny",
    }


def test_a_default_deny_has_a_generated_message_and_no_rule(make_policy: PolicyFactory) -> None:
    decision = make_policy(policies_default="deny").decide(CallFacts("t", {}))
    assert isinstance(decision, Deny)
    message, data = block_feedback(decision, "t")
    assert "'t'" in message
    assert (data["rule"], data["rule_index"], data["policy_reason"]) == (None, None, "default_deny")
    assert data["suggestion"]


def test_a_rule_message_without_suggestion_keeps_the_generated_suggestion() -> None:
    decision = Deny(reason="policy_denied", rule="r", rule_index=0, feedback=Feedback(message="No."))
    message, data = block_feedback(decision, "t")
    assert message == "No."
    assert data["suggestion"]


def test_drift_feedback_lists_the_drifted_aspects_and_ignores_rule_feedback() -> None:
    decision = Deny(
        reason="tool_definition_drift",
        drifted_aspects=("annotations", "description"),
        feedback=Feedback(message="rule text"),
    )
    message, data = block_feedback(decision, "get_weather")
    assert message != "rule text"
    assert data["drifted_aspects"] == ["annotations", "description"]
    assert data["retry_allowed"] is False
    assert set(data) == BASE_KEYS | {"drifted_aspects"}


def test_evidence_feedback_carries_every_unmet_list_and_allows_retry(make_policy: PolicyFactory) -> None:
    policy = make_policy(
        [{"name": "g", "match": {"tool": "refund"}, "evidence": {"requires": ["k"]}, "requires": ["lookup"]}]
    )
    decision = policy.decide(CallFacts("refund", {}))
    assert isinstance(decision, Deny)
    message, data = block_feedback(decision, "refund")
    assert "refund" in message
    assert (data["reason"], data["rule"], data["rule_index"], data["action"]) == (
        "evidence_missing",
        "g",
        0,
        "deny",
    )
    assert data["missing_evidence"] == ["k"]
    assert data["expired_evidence"] == []
    assert data["unverified_evidence"] == []
    assert data["missing_dependencies"] == ["lookup"]
    assert data["retry_allowed"] is True
    assert "lookup" in data["suggestion"]
    assert set(data) == BASE_KEYS | {
        "missing_evidence",
        "expired_evidence",
        "unverified_evidence",
        "missing_dependencies",
    }


def test_a_gate_rules_own_feedback_replaces_the_generated_text(make_policy: PolicyFactory) -> None:
    rule = {
        "name": "g",
        "match": {"tool": "refund"},
        "requires": ["lookup"],
        "feedback": {"message": "Look the order up first.", "suggestion": "Call lookup."},
    }
    decision = make_policy([rule]).decide(CallFacts("refund", {}))
    assert isinstance(decision, Deny)
    message, data = block_feedback(decision, "refund")
    assert (message, data["suggestion"], data["reason"]) == (
        "Look the order up first.",
        "Call lookup.",
        "dependency_missing",
    )


def test_unavailable_approval_and_limits_report_the_action_that_could_not_run() -> None:
    for reason, action in (
        ("approval_unavailable", "require_approval"),
        ("limits_unavailable", "rate_limit"),
    ):
        decision = Deny(reason=reason, rule="r", rule_index=3, blocked_action=action)
        message, data = block_feedback(decision, "t")
        assert message
        assert (data["reason"], data["action"], data["retry_allowed"], data["rule_index"]) == (
            reason,
            action,
            False,
            3,
        )
        assert set(data) == BASE_KEYS


def test_the_simulation_report_says_what_would_have_happened(make_policy: PolicyFactory) -> None:
    policy = make_policy(
        [{"name": "deny-t", "match": {"tool": "t"}, "action": "deny"}], policies_dry_run=True
    )
    context = DecisionContext(tool=ToolFacts(hints=Hints(), known=True))
    denied = policy.decide(CallFacts("t", {}), context)
    allowed = policy.decide(CallFacts("u", {}), context)
    assert isinstance(denied, DryRun)
    assert isinstance(allowed, DryRun)
    assert simulation_report(denied, denied.would) == {
        "dry_run": True,
        "would_forward": False,
        "policy_decision": "deny",
        "matched_rule": "deny-t",
        "evidence_satisfied": True,
        "limits_ok": True,
    }
    report = simulation_report(allowed, Allow(reason="default"))
    assert (report["would_forward"], report["policy_decision"], report["matched_rule"]) == (
        True,
        "allow",
        None,
    )


def test_the_simulation_report_flags_unmet_evidence_and_unavailable_limits(
    make_policy: PolicyFactory,
) -> None:
    policy = make_policy(
        [
            {"name": "g", "match": {"tool": "g"}, "requires": ["x"]},
            {
                "name": "rl",
                "match": {"tool": "rl"},
                "action": "rate_limit",
                "limits": {"max_calls": 1, "window": "1m"},
            },
        ],
        policies_dry_run=True,
    )
    gated = policy.decide(CallFacts("g", {}))
    limited = policy.decide(CallFacts("rl", {}))
    assert isinstance(gated, DryRun)
    assert isinstance(limited, DryRun)
    assert simulation_report(gated, gated.would)["evidence_satisfied"] is False
    unavailable = Deny(reason="limits_unavailable", blocked_action="rate_limit")
    report = simulation_report(limited, unavailable)
    assert (report["limits_ok"], report["would_forward"], report["policy_decision"]) == (
        False,
        False,
        "rate_limit",
    )


def test_limit_blocks_carry_their_details_and_a_dry_run_reports_them_as_limits_not_ok(
    make_policy: PolicyFactory,
) -> None:
    rate = Deny(
        reason="rate_limited",
        rule="searches",
        rule_index=0,
        blocked_action="rate_limit",
        retry_allowed=True,
        details={
            "current_calls": 5,
            "max_calls": 5,
            "window_seconds": 60,
            "reset_at": "2026-01-01T00:01:00.000Z",
        },
    )
    message, data = block_feedback(rate, "search_docs")
    assert set(data) == BASE_KEYS | {"current_calls", "max_calls", "window_seconds", "reset_at"}
    assert (data["reason"], data["retry_allowed"], data["reset_at"]) == (
        "rate_limited",
        True,
        "2026-01-01T00:01:00.000Z",
    )
    assert "5 of 5 calls" in message
    invalid = Deny(
        reason="spend_limited",
        blocked_action="spend_limit",
        retry_allowed=True,
        details={"invalid_amount": "not_a_number", "field": "$.amount"},
    )
    message, data = block_feedback(invalid, "pay")
    assert "$.amount is not a JSON number" in message
    assert "non-negative JSON number" in data["suggestion"]
    limited = make_policy(
        [
            {
                "name": "rl",
                "match": {"tool": "rl"},
                "action": "rate_limit",
                "limits": {"max_calls": 1, "window": "1m"},
            }
        ],
        policies_dry_run=True,
    ).decide(CallFacts("rl", {}))
    assert isinstance(limited, DryRun)
    for reason in ("rate_limited", "spend_limited", "budget_exceeded", "session_unresolved"):
        report = simulation_report(limited, Deny(reason=reason, blocked_action="rate_limit"))
        assert (report["limits_ok"], report["would_forward"]) == (False, False), reason
    budgets = Deny(reason="budget_exceeded", details={"budgets": [{"name": "daily"}]})
    assert simulation_report(limited, budgets)["budgets"] == [{"name": "daily"}]
