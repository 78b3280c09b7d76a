"""The pure gate check: evidence, verification, ``requires`` and SDK-declared prerequisites."""

from __future__ import annotations

from typing import Any

from helio_proxy.config.policies import Rule
from helio_proxy.evidence import (
    PASSED,
    CompletedCall,
    EvidenceEntry,
    GateRequirements,
    SessionSnapshot,
    check_gates,
)

NOW = 1_700_000_000_000


def rule(**fields: Any) -> Rule:
    return Rule.model_validate({"match": {"tool": "orders.refund"}, **fields})


def entry(
    key: str, *, expires_in: int = 60_000, verified: bool = False, tool: str = "orders.lookup"
) -> EvidenceEntry:
    return EvidenceEntry(key, {"x": 1}, tool, NOW - 1_000, NOW + expires_in, verified)


def state(
    *entries: EvidenceEntry,
    expired: dict[str, str] | None = None,
    succeeded: set[str] | None = None,
    called: set[str] | None = None,
    dependencies: dict[str, tuple[str, ...]] | None = None,
) -> SessionSnapshot:
    return SessionSnapshot(
        "s1",
        evidence={e.evidence_key: e for e in entries},
        expired=expired or {},
        succeeded_tools=frozenset(succeeded or set()),
        called_tools=frozenset((called or set()) | (succeeded or set())),
        dependencies=dependencies or {},
    )


def needs(
    tool: str = "orders.refund", producers: dict[str, str] | None = None, **fields: Any
) -> GateRequirements:
    return GateRequirements.for_call(tool, rule(**fields), producers)


def test_live_evidence_passes_the_gate() -> None:
    result = check_gates(needs(evidence={"requires": ["order_data"]}), state(entry("order_data")), NOW)
    assert result.passed
    assert [met["evidence"] for met in result.satisfied] == ["order_data"]
    assert result.reason is None


def test_evidence_never_marked_is_missing() -> None:
    result = check_gates(needs(evidence={"requires": ["order_data"]}), state(), NOW)
    assert result.reason == "evidence_missing"
    assert result.missing_evidence == ("order_data",)
    assert result.expired_evidence == ()


def test_evidence_seen_but_expired_is_expired_not_missing() -> None:
    result = check_gates(
        needs(evidence={"requires": ["order_data"]}), state(expired={"order_data": "orders.lookup"}), NOW
    )
    assert result.reason == "evidence_expired"
    assert result.expired_evidence == ("order_data",)
    assert result.missing_evidence == ()
    assert "orders.lookup" in result.suggestion


def test_an_entry_past_its_expiry_at_check_time_is_expired() -> None:
    """Expiry is exclusive: at ``expires_at`` the evidence no longer counts."""
    result = check_gates(needs(evidence={"requires": ["k"]}), state(entry("k", expires_in=0)), NOW)
    assert result.expired_evidence == ("k",)


def test_verified_rules_reject_unverified_evidence_and_accept_verified() -> None:
    requirements = needs(evidence={"requires": ["order_data"], "verified": True})
    blocked = check_gates(requirements, state(entry("order_data")), NOW)
    assert blocked.reason == "evidence_missing"
    assert blocked.missing_evidence == ("order_data",)
    assert blocked.unverified_evidence == ("order_data",)
    assert "call_id" in blocked.suggestion
    assert check_gates(requirements, state(entry("order_data", verified=True)), NOW).passed


def test_requires_needs_a_succeeded_prerequisite_by_default() -> None:
    requirements = needs(requires=["orders.lookup"])
    assert check_gates(requirements, state(succeeded={"orders.lookup"}), NOW).passed
    result = check_gates(requirements, state(called={"orders.lookup"}), NOW)
    assert result.reason == "dependency_missing"
    assert result.missing_dependencies == ("orders.lookup",)


def test_an_iserror_prerequisite_does_not_unlock_a_requires_success_rule() -> None:
    """The reference counts ``isError: true`` as success; we do not (DESIGN §6)."""
    # What the store holds after a call whose result had isError: true: called, not succeeded.
    after_is_error = SessionSnapshot(
        "s1",
        completed_tools=(CompletedCall("orders.lookup", NOW, False, "c1"),),
        called_tools=frozenset({"orders.lookup"}),
    )
    result = check_gates(needs(requires=["orders.lookup"]), after_is_error, NOW)
    assert result.missing_dependencies == ("orders.lookup",)


def test_requires_success_false_accepts_any_earlier_call() -> None:
    requirements = needs(requires=["orders.lookup"], requires_success=False)
    assert check_gates(requirements, state(called={"orders.lookup"}), NOW).passed
    assert check_gates(requirements, state(), NOW).missing_dependencies == ("orders.lookup",)


def test_sdk_declared_dependencies_apply_to_the_tool_even_without_a_rule() -> None:
    requirements = GateRequirements.for_call("orders.refund", None)
    declared = {"orders.refund": ("orders.lookup", "auth.verify")}
    result = check_gates(requirements, state(succeeded={"auth.verify"}, dependencies=declared), NOW)
    assert result.reason == "dependency_missing"
    assert result.missing_dependencies == ("orders.lookup",)
    other_tool = GateRequirements.for_call("mail.send", None)
    assert check_gates(other_tool, state(dependencies=declared), NOW).passed


def test_sdk_declared_dependencies_need_success_even_under_requires_success_false() -> None:
    requirements = needs(requires=["a"], requires_success=False)
    snapshot = state(called={"a", "b"}, dependencies={"orders.refund": ("b",)})
    assert check_gates(requirements, snapshot, NOW).missing_dependencies == ("b",)


def test_every_unmet_item_is_reported_together() -> None:
    requirements = needs(
        evidence={"requires": ["order_data", "refund_policy", "customer", "fresh"], "verified": True},
        requires=["auth.verify", "orders.lookup"],
        producers={"refund_policy": "policies.fetch"},
    )
    snapshot = state(
        entry("customer"),
        entry("fresh", verified=True),
        expired={"order_data": "orders.lookup"},
        succeeded={"orders.lookup"},
        dependencies={"orders.refund": ("auth.verify", "mail.draft")},
    )
    result = check_gates(requirements, snapshot, NOW)
    assert result.reason == "evidence_missing"
    assert result.missing_evidence == ("refund_policy", "customer")
    assert result.unverified_evidence == ("customer",)
    assert result.expired_evidence == ("order_data",)
    assert result.missing_dependencies == ("auth.verify", "mail.draft")
    assert result.retry_allowed
    for tool in ("policies.fetch", "orders.lookup", "auth.verify", "mail.draft"):
        assert tool in result.suggestion
    data = result.feedback_fields()
    assert data == {
        "reason": "evidence_missing",
        "suggestion": result.suggestion,
        "retry_allowed": True,
        "missing_evidence": ["refund_policy", "customer"],
        "expired_evidence": ["order_data"],
        "unverified_evidence": ["customer"],
        "missing_dependencies": ["auth.verify", "mail.draft"],
    }


def test_reason_precedence_is_missing_then_expired_then_dependencies() -> None:
    requirements = needs(evidence={"requires": ["k"]}, requires=["t"])
    assert check_gates(requirements, state(expired={"k": "x"}), NOW).reason == "evidence_expired"
    assert check_gates(requirements, state(entry("k")), NOW).reason == "dependency_missing"


def test_an_unresolved_session_fails_a_rule_gate_with_policy_denied() -> None:
    """Reference: the session gate denies evidence/requires rules without identity, in both modes."""
    result = check_gates(needs(requires=["orders.lookup"]), None, NOW)
    assert not result.passed
    assert result.reason == "policy_denied"
    assert not result.retry_allowed
    assert result.feedback_fields()["policy_reason"] == "session_unresolved"
    assert "x-helio-session-id" in result.suggestion


def test_an_unresolved_session_passes_a_call_without_a_rule_gate() -> None:
    assert check_gates(GateRequirements.for_call("orders.refund", rule(action="allow")), None, NOW) is PASSED


def test_duplicate_requirements_are_reported_once() -> None:
    result = check_gates(needs(evidence={"requires": ["k", "k"]}, requires=["t", "t"]), state(), NOW)
    assert result.missing_evidence == ("k",)
    assert result.missing_dependencies == ("t",)


def test_generated_message_names_what_is_unmet() -> None:
    result = check_gates(needs(evidence={"requires": ["k"]}, requires=["t"]), state(), NOW)
    message = result.message("orders.refund")
    assert "k" in message
    assert "t" in message
    assert "orders.refund" in message
