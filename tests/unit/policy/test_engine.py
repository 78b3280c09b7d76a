"""decide(): rule order, every action, annotations, the other matchers, and the order of checks."""

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from helio_proxy.evidence.gates import GateRequirements
from helio_proxy.evidence.model import EvidenceEntry, SessionSnapshot
from helio_proxy.policy import (
    UNRESOLVED_GATES,
    Allow,
    CallFacts,
    CompiledPolicy,
    DecisionContext,
    Deny,
    DryRun,
    Hints,
    RateLimit,
    RequireApproval,
    SnapshotGates,
    SpendLimit,
    ToolFacts,
)

PolicyFactory = Callable[..., CompiledPolicy]

READ_ONLY = Hints(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
DESTRUCTIVE = Hints(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)
SEED_RULES: list[dict[str, Any]] = [
    {
        "name": "block-destructive",
        "match": {"annotations": {"destructiveHint": True}},
        "action": "deny",
        "feedback": {
            "message": "Destructive operations are blocked by policy.",
            "suggestion": "Use a non-destructive alternative.",
        },
    },
    {"name": "allow-reads", "match": {"annotations": {"readOnlyHint": True}}, "action": "allow"},
]


def known(hints: Hints, *, drifted: Sequence[str] = (), current: Hints | None = None) -> DecisionContext:
    return DecisionContext(
        tool=ToolFacts(hints=hints, known=True, drifted_aspects=tuple(drifted), current_hints=current)
    )


def test_the_first_matching_rule_wins(make_policy: PolicyFactory) -> None:
    policy = make_policy(
        [
            {"name": "first", "match": {"tool": "send_*"}, "action": "allow"},
            {"name": "second", "match": {"tool": "send_email"}, "action": "deny"},
        ]
    )
    decision = policy.decide(CallFacts("send_email", {}))
    assert isinstance(decision, Allow)
    assert (decision.rule, decision.rule_index, decision.reason) == ("first", 0, "rule_matched")


def test_later_rules_apply_when_earlier_ones_do_not_match(make_policy: PolicyFactory) -> None:
    policy = make_policy(
        [
            {"match": {"tool": "get_*"}, "action": "allow"},
            {"match": {"tool": "delete_*"}, "action": "deny"},
        ]
    )
    decision = policy.decide(CallFacts("delete_user", {}))
    assert isinstance(decision, Deny)
    assert (decision.rule, decision.rule_index, decision.policy_reason) == ("rule-1", 1, "rule_deny")


@pytest.mark.parametrize("default", ["allow", "deny"])
def test_with_no_matching_rule_the_default_applies(make_policy: PolicyFactory, default: str) -> None:
    policy = make_policy([{"match": {"tool": "other"}, "action": "deny"}], policies_default=default)
    decision = policy.decide(CallFacts("get_weather", {}), known(READ_ONLY))
    assert decision.action == default
    assert (decision.rule, decision.rule_index) == (None, None)
    if isinstance(decision, Deny):
        assert (decision.reason, decision.policy_reason) == ("policy_denied", "default_deny")
    else:
        assert decision.reason == "default"


def test_the_seed_config_blocks_destructive_tools_and_allows_read_only_ones(
    make_policy: PolicyFactory,
) -> None:
    policy = make_policy(SEED_RULES)
    blocked = policy.decide(CallFacts("delete_user", {"user_id": "u1"}), known(DESTRUCTIVE))
    allowed = policy.decide(CallFacts("get_weather", {"city": "x"}), known(READ_ONLY))
    assert isinstance(blocked, Deny)
    assert blocked.rule == "block-destructive"
    assert isinstance(allowed, Allow)
    assert allowed.rule == "allow-reads"


def test_a_tool_with_unknown_annotations_is_treated_as_destructive(make_policy: PolicyFactory) -> None:
    """MCP defaults: destructiveHint true, readOnlyHint false (fail closed until primed)."""
    decision = make_policy(SEED_RULES).decide(CallFacts("never_listed", {}))
    assert isinstance(decision, Deny)
    assert decision.rule == "block-destructive"


def test_missing_hints_take_mcp_defaults_individually() -> None:
    hints = Hints.from_annotations({"readOnlyHint": True, "destructiveHint": "yes"})
    assert hints == Hints(readOnlyHint=True, destructiveHint=True, idempotentHint=False, openWorldHint=True)
    assert Hints.from_annotations(None) == Hints()


@pytest.mark.parametrize(
    ("annotations", "hints", "expected"),
    [
        ({"idempotentHint": True}, Hints(idempotentHint=True), True),
        ({"idempotentHint": True}, Hints(), False),
        ({"openWorldHint": False}, Hints(openWorldHint=False), True),
        ({"openWorldHint": False}, Hints(), False),
        ({"readOnlyHint": False, "destructiveHint": False}, Hints(destructiveHint=False), True),
        ({"readOnlyHint": False, "destructiveHint": False}, Hints(), False),
    ],
)
def test_every_annotation_hint_can_be_matched(
    make_policy: PolicyFactory, annotations: dict[str, bool], hints: Hints, expected: bool
) -> None:
    policy = make_policy([{"match": {"annotations": annotations}, "action": "deny"}])
    assert policy.decide(CallFacts("t", {}), known(hints)).blocks is expected


def test_environment_matches_the_configured_environment_exactly(make_policy: PolicyFactory) -> None:
    rules = [{"match": {"environment": "production"}, "action": "deny"}]
    assert make_policy(rules, environment="production").decide(CallFacts("t", {})).blocks
    assert not make_policy(rules, environment="Production").decide(CallFacts("t", {})).blocks


def test_upstreams_match_the_upstream_the_call_goes_to(make_policy: PolicyFactory) -> None:
    policy = make_policy(
        [{"match": {"upstreams": ["billing"]}, "action": "deny"}],
        upstream=None,
        upstreams=[{"name": "billing", "url": "http://b/mcp"}, {"name": "docs", "url": "http://d/mcp"}],
    )
    assert policy.decide(CallFacts("t", {}, upstream="billing")).blocks
    assert not policy.decide(CallFacts("t", {}, upstream="docs")).blocks


def test_a_metadata_matcher_never_matches_an_mcp_call(make_policy: PolicyFactory) -> None:
    policy = make_policy([{"match": {"tool": "*", "metadata": {"channel_id": "C1"}}, "action": "deny"}])
    assert isinstance(policy.decide(CallFacts("t", {"channel_id": "C1"})), Allow)


def test_any_all_and_not_combine_sub_matches(make_policy: PolicyFactory) -> None:
    policy = make_policy(
        [
            {
                "name": "big-foreign-payment",
                "match": {
                    "tool": "create_payment",
                    "all": [{"input": {"$.amount": {"gt": 100}}}],
                    "any": [
                        {"input": {"$.currency": {"eq": "USD"}}},
                        {"input": {"$.currency": {"eq": "EUR"}}},
                    ],
                    "not": {"input": {"$.recipient": {"in": ["acme"]}}},
                },
                "action": "deny",
            }
        ]
    )

    def blocked(arguments: dict[str, Any]) -> bool:
        return policy.decide(CallFacts("create_payment", arguments)).blocks

    assert blocked({"amount": 500, "currency": "USD", "recipient": "bob"})
    assert not blocked({"amount": 500, "currency": "GBP", "recipient": "bob"})
    assert not blocked({"amount": 500, "currency": "EUR", "recipient": "acme"})
    assert not blocked({"amount": 50, "currency": "EUR", "recipient": "bob"})


def test_input_conditions_route_calls_by_amount(make_policy: PolicyFactory) -> None:
    policy = make_policy(
        [
            {
                "name": "large",
                "match": {"tool": "create_payment", "input": {"$.amount": {"gt": 1000}}},
                "action": "deny",
            },
            {"name": "small", "match": {"tool": "create_payment"}, "action": "allow"},
        ]
    )
    assert policy.decide(CallFacts("create_payment", {"amount": 1000.01})).rule == "large"
    assert policy.decide(CallFacts("create_payment", {"amount": 1000})).rule == "small"
    assert policy.decide(CallFacts("create_payment", {"amount": "5000"})).rule == "large"
    assert policy.decide(CallFacts("create_payment", {"amount": "500"})).rule == "small"
    assert policy.decide(CallFacts("create_payment", {"amount": "lots"})).rule == "large"


def test_each_action_yields_its_decision_value(make_policy: PolicyFactory) -> None:
    policy = make_policy(
        [
            {"match": {"tool": "a"}, "action": "allow"},
            {"match": {"tool": "d"}, "action": "deny"},
            {"match": {"tool": "ra"}, "action": "require_approval", "approval": {"channel": "dashboard"}},
            {"match": {"tool": "rl"}, "action": "rate_limit", "limits": {"max_calls": 5, "window": "1m"}},
            {
                "match": {"tool": "sl"},
                "action": "spend_limit",
                "limits": {"max_spend": {"field": "$.amount", "limit": 100}},
            },
            {"match": {"tool": "dr"}, "action": "dry_run"},
        ]
    )
    kinds = {tool: type(policy.decide(CallFacts(tool, {}))) for tool in ["a", "d", "ra", "rl", "sl", "dr"]}
    assert kinds == {
        "a": Allow,
        "d": Deny,
        "ra": RequireApproval,
        "rl": RateLimit,
        "sl": SpendLimit,
        "dr": DryRun,
    }
    approval = policy.decide(CallFacts("ra", {}))
    assert isinstance(approval, RequireApproval)
    assert approval.route is not None
    assert approval.route.channel == "dashboard"
    limit = policy.decide(CallFacts("rl", {}))
    assert isinstance(limit, RateLimit)
    assert limit.limits.max_calls == 5


def test_flag_destructive_log_flags_an_unmatched_destructive_call(make_policy: PolicyFactory) -> None:
    policy = make_policy([{"match": {"tool": "x"}, "action": "allow"}], policies_flag_destructive="log")
    decision = policy.decide(CallFacts("delete_user", {}), known(DESTRUCTIVE))
    assert isinstance(decision, Allow)
    assert decision.flagged_destructive
    assert not policy.decide(CallFacts("get", {}), known(READ_ONLY)).flagged_destructive
    assert not policy.decide(CallFacts("x", {}), known(DESTRUCTIVE)).flagged_destructive


def test_flag_destructive_require_approval_applies_only_when_no_rule_matched(
    make_policy: PolicyFactory,
) -> None:
    policy = make_policy(
        [{"name": "ok", "match": {"tool": "purge"}, "action": "allow"}],
        policies_flag_destructive="require_approval",
    )
    unmatched = policy.decide(CallFacts("delete_user", {}), known(DESTRUCTIVE))
    assert isinstance(unmatched, RequireApproval)
    assert unmatched.reason == "flag_destructive"
    assert isinstance(policy.decide(CallFacts("purge", {}), known(DESTRUCTIVE)), Allow)


def test_a_decision_without_a_gate_is_one_value_made_when_the_policy_compiles(
    make_policy: PolicyFactory,
) -> None:
    """decide() builds nothing for a call no gate concerns: each rule's decision, and each default,
    is a frozen value made once per compiled policy, whatever the arguments."""
    policy = make_policy(
        [
            {"name": "no-deletes", "match": {"tool": "delete_*"}, "action": "deny"},
            {"name": "reads", "match": {"tool": "get_*"}, "action": "allow"},
        ],
        policies_flag_destructive="log",
    )
    denied = policy.decide(CallFacts("delete_user", {"id": 1}), known(READ_ONLY))
    assert policy.decide(CallFacts("delete_team", {"id": 2}), known(READ_ONLY)) is denied
    assert isinstance(denied, Deny)
    assert (denied.rule, denied.rule_index) == ("no-deletes", 0)
    read = policy.decide(CallFacts("get_user", {}), known(DESTRUCTIVE))
    assert policy.decide(CallFacts("get_team", {"x": 1}), known(READ_ONLY)) is read
    default = policy.decide(CallFacts("list_users", {}), known(READ_ONLY))
    assert policy.decide(CallFacts("count_users", {}), known(READ_ONLY)) is default
    assert (default.reason, default.flagged_destructive) == ("default", False)
    flagged = policy.decide(CallFacts("purge", {}), known(DESTRUCTIVE))
    assert policy.decide(CallFacts("wipe", {}), known(DESTRUCTIVE)) is flagged
    assert flagged.flagged_destructive
    assert flagged is not default
    assert make_policy(None, policies_default="deny").decide(CallFacts("x", {})).reason == "policy_denied"


def test_drift_block_denies_even_a_call_a_rule_allows(make_policy: PolicyFactory) -> None:
    policy = make_policy(SEED_RULES)
    decision = policy.decide(CallFacts("get_weather", {}), known(READ_ONLY, drifted=["description"]))
    assert isinstance(decision, Deny)
    assert (decision.reason, decision.drifted_aspects, decision.retry_allowed) == (
        "tool_definition_drift",
        ("description",),
        False,
    )


def test_drift_does_not_turn_a_rule_deny_into_something_else(make_policy: PolicyFactory) -> None:
    policy = make_policy(SEED_RULES, policies_on_tool_drift="require_approval")
    decision = policy.decide(CallFacts("delete_user", {}), known(DESTRUCTIVE, drifted=["title"]))
    assert isinstance(decision, Deny)
    assert decision.reason == "policy_denied"


def test_drift_require_approval_escalates_an_allowed_call(make_policy: PolicyFactory) -> None:
    policy = make_policy(SEED_RULES, policies_on_tool_drift="require_approval")
    decision = policy.decide(CallFacts("get_weather", {}), known(READ_ONLY, drifted=["inputSchema"]))
    assert isinstance(decision, RequireApproval)
    assert (decision.reason, decision.drifted_aspects) == ("tool_definition_drift", ("inputSchema",))


def test_drift_log_takes_the_stricter_of_the_baseline_and_current_decisions(
    make_policy: PolicyFactory,
) -> None:
    policy = make_policy(SEED_RULES, policies_on_tool_drift="log")
    # The server now says its read-only tool is destructive: the stricter (deny) wins.
    stricter = policy.decide(
        CallFacts("get_weather", {}), known(READ_ONLY, drifted=["annotations"], current=DESTRUCTIVE)
    )
    assert isinstance(stricter, Deny)
    assert stricter.rule == "block-destructive"
    assert stricter.drifted_aspects == ("annotations",)
    # A destructive tool re-described as read-only stays blocked (baseline decides).
    baseline = policy.decide(
        CallFacts("delete_user", {}), known(DESTRUCTIVE, drifted=["annotations"], current=READ_ONLY)
    )
    assert isinstance(baseline, Deny)
    # Other drift is only marked.
    marked = policy.decide(
        CallFacts("get_weather", {}), known(READ_ONLY, drifted=["description"], current=READ_ONLY)
    )
    assert isinstance(marked, Allow)
    assert marked.drifted_aspects == ("description",)


def session(
    *,
    evidence: dict[str, int] | None = None,
    succeeded: set[str] | None = None,
    called: set[str] | None = None,
) -> DecisionContext:
    """A session at t=1000 ms holding ``evidence`` (key -> expiry, epoch ms) and call history."""
    entries = {
        key: EvidenceEntry(key, {}, "lookup_order", timestamp=0, expires_at=expires, verified=False)
        for key, expires in (evidence or {}).items()
    }
    state = SessionSnapshot(
        session_id="s-1",
        evidence=entries,
        succeeded_tools=frozenset(succeeded or set()),
        called_tools=frozenset((called or set()) | (succeeded or set())),
    )
    return DecisionContext(gates=SnapshotGates(state, now_ms=1000))


GATE = {
    "name": "refund-gate",
    "match": {"tool": "refund"},
    "evidence": {"requires": ["order_checked", "identity_verified"]},
    "requires": ["lookup_order"],
}


def test_a_gate_blocks_listing_every_unmet_item_in_an_empty_session(make_policy: PolicyFactory) -> None:
    decision = make_policy([GATE]).decide(CallFacts("refund", {}))
    assert isinstance(decision, Deny)
    assert decision.reason == "evidence_missing"
    assert decision.gate is not None
    assert decision.gate.missing_evidence == ("order_checked", "identity_verified")
    assert decision.gate.missing_dependencies == ("lookup_order",)
    assert decision.retry_allowed
    assert (decision.rule, decision.rule_index) == ("refund-gate", 0)


def test_a_met_gate_applies_its_action_and_an_absent_action_means_allow(make_policy: PolicyFactory) -> None:
    context = session(evidence={"order_checked": 5000, "identity_verified": 5000}, succeeded={"lookup_order"})
    decision = make_policy([GATE]).decide(CallFacts("refund", {}), context)
    assert isinstance(decision, Allow)
    assert decision.rule == "refund-gate"


def test_gate_reasons_are_reported_in_order_missing_expired_dependency(make_policy: PolicyFactory) -> None:
    policy = make_policy([GATE])
    expired = session(evidence={"order_checked": 500, "identity_verified": 5000}, succeeded={"lookup_order"})
    no_dep = session(evidence={"order_checked": 5000, "identity_verified": 5000}, called={"lookup_order"})
    first = policy.decide(CallFacts("refund", {}), expired)
    second = policy.decide(CallFacts("refund", {}), no_dep)
    assert isinstance(first, Deny)
    assert first.gate is not None
    assert (first.reason, first.gate.expired_evidence) == ("evidence_expired", ("order_checked",))
    assert isinstance(second, Deny)
    assert second.gate is not None
    assert (second.reason, second.gate.missing_dependencies) == ("dependency_missing", ("lookup_order",))


def test_a_gate_with_requires_success_false_accepts_a_failed_prerequisite(make_policy: PolicyFactory) -> None:
    rule = {"match": {"tool": "refund"}, "requires": ["lookup_order"], "requires_success": False}
    context = session(called={"lookup_order"})
    assert isinstance(make_policy([rule]).decide(CallFacts("refund", {}), context), Allow)


def test_a_gate_without_a_session_id_is_denied_as_session_unresolved(make_policy: PolicyFactory) -> None:
    """The reference's proxy-owned identity: gates need a resolved session under either mode."""
    context = DecisionContext(gates=SnapshotGates(None, now_ms=0))
    decision = make_policy([GATE]).decide(CallFacts("refund", {}), context)
    assert isinstance(decision, Deny)
    assert (decision.reason, decision.policy_reason, decision.retry_allowed) == (
        "policy_denied",
        "session_unresolved",
        False,
    )
    assert isinstance(make_policy([GATE]).decide(CallFacts("other", {}), context), Allow)


def test_an_unresolved_call_under_no_gate_passes_without_building_requirements(
    make_policy: PolicyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the gateway passes for a call with no session id: one value, made once."""
    policy = make_policy([GATE, {"name": "reads", "match": {"tool": "read_*"}, "action": "allow"}])
    unresolved = DecisionContext(gates=UNRESOLVED_GATES)
    gated = policy.decide(CallFacts("refund", {}), unresolved)
    assert isinstance(gated, Deny)
    assert (gated.policy_reason, gated.retry_allowed) == ("session_unresolved", False)

    def built(*_: object, **__: object) -> None:
        raise AssertionError("requirements built for a call no gate applies to")

    monkeypatch.setattr(GateRequirements, "for_call", built)
    for tool in ("read_orders", "other"):
        decision = policy.decide(CallFacts(tool, {}), unresolved)
        assert isinstance(decision, Allow)
        assert decision.gate is None


def test_sdk_declared_prerequisites_apply_even_when_no_rule_matched(make_policy: PolicyFactory) -> None:
    state = SessionSnapshot(session_id="s-1", dependencies={"refund": ("lookup_order",)})
    decision = make_policy().decide(CallFacts("refund", {}), DecisionContext(gates=SnapshotGates(state, 0)))
    assert isinstance(decision, Deny)
    assert (decision.reason, decision.rule) == ("dependency_missing", None)


def test_drift_is_checked_before_gates(make_policy: PolicyFactory) -> None:
    decision = make_policy([GATE]).decide(CallFacts("refund", {}), known(READ_ONLY, drifted=["title"]))
    assert isinstance(decision, Deny)
    assert decision.reason == "tool_definition_drift"


def test_a_dry_run_rule_simulates_an_allowed_call(make_policy: PolicyFactory) -> None:
    decision = make_policy([{"name": "try", "match": {"tool": "t"}, "action": "dry_run"}]).decide(
        CallFacts("t", {})
    )
    assert isinstance(decision, DryRun)
    assert not decision.global_switch
    assert decision.policy_decision == "dry_run"
    assert isinstance(decision.would, Allow)
    assert decision.would.rule == "try"


def test_drift_block_overrides_a_dry_run_rule(make_policy: PolicyFactory) -> None:
    policy = make_policy([{"match": {"tool": "t"}, "action": "dry_run"}])
    assert isinstance(policy.decide(CallFacts("t", {}), known(READ_ONLY, drifted=["title"])), Deny)


def test_an_unmet_gate_overrides_a_dry_run_rule(make_policy: PolicyFactory) -> None:
    rule = {"match": {"tool": "t"}, "action": "dry_run", "requires": ["x"]}
    decision = make_policy([rule]).decide(CallFacts("t", {}))
    assert isinstance(decision, Deny)
    assert decision.reason == "dependency_missing"


def test_global_dry_run_simulates_every_decision_even_a_drift_block(make_policy: PolicyFactory) -> None:
    policy = make_policy(SEED_RULES, policies_dry_run=True)
    denied = policy.decide(CallFacts("delete_user", {}), known(DESTRUCTIVE))
    drifted = policy.decide(CallFacts("get_weather", {}), known(READ_ONLY, drifted=["title"]))
    allowed = policy.decide(CallFacts("get_weather", {}), known(READ_ONLY))
    for decision, inner in ((denied, Deny), (drifted, Deny), (allowed, Allow)):
        assert isinstance(decision, DryRun)
        assert decision.global_switch
        assert isinstance(decision.would, inner)
    assert isinstance(denied, DryRun)
    assert denied.policy_decision == "deny"
    assert denied.rule == "block-destructive"


def test_shadow_rules_are_decided_separately_and_have_no_default(make_policy: PolicyFactory) -> None:
    policy = make_policy(
        SEED_RULES,
        policies_shadow=[{"match": {"tool": "get_*"}, "action": "deny"}],
    )
    shadow = policy.decide_shadow(CallFacts("get_weather", {}), known(READ_ONLY))
    assert isinstance(shadow, Deny)
    assert (shadow.rule, shadow.rule_index) == ("shadow-0", 0)
    assert policy.decide_shadow(CallFacts("send_email", {})) is None
    assert isinstance(policy.decide(CallFacts("get_weather", {}), known(READ_ONLY)), Allow)


def test_many_tool_names_do_not_grow_the_candidate_index_without_bound(make_policy: PolicyFactory) -> None:
    from helio_proxy.policy.engine import TOOL_CACHE_SIZE

    policy = make_policy([{"match": {"tool": "t_*"}, "action": "deny"}])
    for n in range(TOOL_CACHE_SIZE + 10):
        assert policy.decide(CallFacts(f"t_{n}", {})).blocks
    rules = policy._rules  # pyright: ignore[reportPrivateUsage]
    assert len(rules._by_pair) <= TOOL_CACHE_SIZE  # pyright: ignore[reportPrivateUsage]
    assert len(rules._last) <= TOOL_CACHE_SIZE  # pyright: ignore[reportPrivateUsage]


def test_data_plane_rule_is_the_first_match_only_when_it_carries_data_plane_settings(
    make_policy: PolicyFactory,
) -> None:
    assert make_policy(SEED_RULES).has_data_plane_rules is False
    assert make_policy(SEED_RULES).data_plane_rule(CallFacts(tool="x", arguments={}), READ_ONLY) is None
    policy = make_policy(
        [
            {"name": "big", "match": {"tool": "pay", "input": {"$.amount": {"gt": 100}}}, "action": "deny"},
            {
                "name": "pay",
                "match": {"tool": "pay"},
                "action": "allow",
                "data_plane": {"input_schema": "warn"},
            },
        ]
    )
    assert policy.has_data_plane_rules is True
    assert policy.data_plane_rule(CallFacts(tool="pay", arguments={"amount": 5}), READ_ONLY) == 1
    # The first match has no data_plane settings: none apply, as decide() would pick that rule.
    assert policy.data_plane_rule(CallFacts(tool="pay", arguments={"amount": 500}), READ_ONLY) is None
    assert policy.data_plane_rule(CallFacts(tool="other", arguments={}), READ_ONLY) is None


def test_a_tools_candidate_rules_follow_its_hints_when_they_change(make_policy: PolicyFactory) -> None:
    """Candidates are kept by tool name with the hints they were worked out for: new hints (an
    accepted definition), equal or not the same object, are matched again."""
    policy = make_policy(
        [{"name": "no-destroy", "match": {"annotations": {"destructiveHint": True}}, "action": "deny"}]
    )
    call = CallFacts("wipe", {})
    assert isinstance(policy.decide(call, known(READ_ONLY)), Allow)
    assert isinstance(policy.decide(call, known(DESTRUCTIVE)), Deny)
    same = Hints(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)
    assert same == DESTRUCTIVE
    assert same is not DESTRUCTIVE
    assert isinstance(policy.decide(call, known(same)), Deny)
    assert isinstance(policy.decide(call, known(READ_ONLY)), Allow)
    # A drifted tool under `on_tool_drift: log` is decided under its baseline's and its current
    # hints in turn: each set is worked out once, not again on every switch.
    calls: list[str] = []
    rules = policy._rules  # pyright: ignore[reportPrivateUsage]
    for compiled in rules.rules:
        static = compiled.static
        object.__setattr__(compiled, "static", lambda t, h, s=static: calls.append(t) or s(t, h))
    for _ in range(5):
        assert isinstance(policy.decide(call, known(READ_ONLY)), Allow)
        assert isinstance(policy.decide(call, known(DESTRUCTIVE)), Deny)
    assert calls == []
