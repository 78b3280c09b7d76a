"""The enforcer's order, written once: the pure route, and settle/peek following it."""

from __future__ import annotations

from typing import Any

import pytest

from helio_proxy.config.policies import Limits
from helio_proxy.gateway.enforcement import GovernanceEnforcer, route
from helio_proxy.governance import ApprovalFacts, GovernedCall, LimitFacts, Settlement
from helio_proxy.policy import Allow, Decision, Deny, DryRun, RateLimit, RequireApproval, SpendLimit
from helio_proxy.policy.facts import CallFacts
from helio_proxy.session.identity import UNRESOLVED

CALL = GovernedCall(facts=CallFacts("pay", {"amount": 30}), identity=UNRESOLVED, request_id=1)
ALLOW = Allow(rule="ok", rule_index=0, reason="rule_matched")
DENY = Deny(rule="no", rule_index=1, reason="policy_denied")
ASK = RequireApproval(rule="ask", rule_index=2, reason="rule_matched")
RATE = RateLimit(
    rule="rate",
    rule_index=3,
    reason="rule_matched",
    limits=Limits.model_validate({"max_calls": 5, "window": "1m"}),
)


@pytest.mark.parametrize(
    ("decision", "approvals", "limits", "step", "outcome"),
    [
        (DENY, True, True, "settled", "policy_denied"),
        (ALLOW, True, False, "settled", "allow"),
        (ALLOW, False, True, "limits", "allow"),
        (RATE, True, False, "settled", "limits_unavailable"),
        (RATE, True, True, "limits", "rate_limit"),
        (ASK, False, True, "settled", "approval_unavailable"),
        (ASK, True, True, "hold", "allow"),
        (ASK, True, False, "hold", "allow"),
        (
            DryRun(rule="ask", rule_index=2, reason="rule_matched", would=ASK, global_switch=True),
            False,
            True,
            "settled",
            "approval_unavailable",
        ),
    ],
)
def test_route_sends_each_decision_to_the_gate_it_meets(
    decision: Decision, approvals: bool, limits: bool, step: str, outcome: str
) -> None:
    chosen = route(decision, approvals=approvals, limits=limits)
    assert chosen.step == step
    shown = chosen.decision.reason if isinstance(chosen.decision, Deny) else chosen.decision.action
    assert shown == outcome
    assert (chosen.held is ASK) == (step == "hold")


class Budgets:
    """A limit gate whose first reservation is over a budget operators may approve."""

    def __init__(self) -> None:
        self.reserved: list[bool] = []

    async def reserve(
        self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall, *, approved: bool = False
    ) -> Settlement:
        self.reserved.append(approved)
        if approved:
            return Settlement(ALLOW, limits=LimitFacts(charged=True))
        blocked = Deny(
            rule="ok", rule_index=0, reason="approval_unavailable", blocked_action="require_approval"
        )
        return Settlement(blocked, limits=LimitFacts(charged=False), over_budget=[{"name": "ops"}])

    def peek(self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall) -> Settlement:
        return Settlement(ALLOW)

    def charges_nothing(self, decision: Allow | RateLimit | SpendLimit) -> bool:
        return False  # a budget applies to every call


class NothingCharged:
    """A limit gate no limit or budget is in force on: reserving would take nothing."""

    async def reserve(
        self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall, *, approved: bool = False
    ) -> Settlement:
        assert isinstance(decision, Allow)
        return Settlement(decision)

    def peek(self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall) -> Settlement:
        return Settlement(ALLOW)

    def charges_nothing(self, decision: Allow | RateLimit | SpendLimit) -> bool:
        return isinstance(decision, Allow)


@pytest.mark.parametrize("limits", [NothingCharged(), None], ids=["no budget", "no limits gate"])
async def test_an_allow_no_gate_applies_to_is_settled_as_settle_would_without_awaiting(
    limits: NothingCharged | None,
) -> None:
    enforcer = GovernanceEnforcer(Operators(approve=True), limits)
    now = enforcer.settled(ALLOW)
    assert now is not None
    awaited = await enforcer.settle(ALLOW, CALL)
    assert (now.decision, now.approvals, now.limits, now.reservations, now.over_budget) == (
        awaited.decision,
        awaited.approvals,
        awaited.limits,
        awaited.reservations,
        awaited.over_budget,
    )
    assert now.decision is ALLOW
    dry = DryRun(rule="d", rule_index=4, reason="rule_matched", would=ALLOW, global_switch=False)
    for other in (DENY, ASK, RATE, dry):
        assert enforcer.settled(other) is None  # each of these is settled by awaiting settle()
    assert GovernanceEnforcer(None, Budgets()).settled(ALLOW) is None  # a budget applies


class Operators:
    def __init__(self, approve: bool) -> None:
        self.approve = approve
        self.asked: list[tuple[str, list[dict[str, Any]]]] = []

    async def hold(self, decision: RequireApproval, call: GovernedCall) -> Settlement:
        self.asked.append(("rule", []))
        return Settlement(ALLOW, approvals=(ApprovalFacts("approved", 1.0, chain={"approval": {"t": 1}}),))

    async def hold_budget(
        self, decision: Decision, call: GovernedCall, breached: list[dict[str, Any]]
    ) -> Settlement:
        self.asked.append(("budget", breached))
        if self.approve:
            return Settlement(ALLOW, approvals=(ApprovalFacts("approved", 2.0),))
        return Settlement(
            Deny(reason="approval_denied", blocked_action="require_approval"),
            approvals=(ApprovalFacts("denied", 3.0),),
        )


async def test_over_a_budget_the_enforcer_asks_operators_then_reserves_again_approved() -> None:
    limits, operators = Budgets(), Operators(approve=True)
    settled = await GovernanceEnforcer(operators, limits).settle(ALLOW, CALL)
    assert isinstance(settled.decision, Allow)
    assert limits.reserved == [False, True]
    assert operators.asked == [("budget", [{"name": "ops"}])]
    assert [a.status for a in settled.approvals] == ["approved"]
    assert settled.limits is not None
    assert settled.limits.charged is True


async def test_a_refused_budget_ticket_blocks_with_both_stages_audit_fields() -> None:
    limits, operators = Budgets(), Operators(approve=False)
    settled = await GovernanceEnforcer(operators, limits).settle(ALLOW, CALL)
    assert isinstance(settled.decision, Deny)
    assert settled.decision.reason == "approval_denied"
    assert limits.reserved == [False]
    assert [a.status for a in settled.approvals] == ["denied"]
    assert settled.limits is not None
    assert settled.limits.charged is False


async def test_without_an_approval_gate_an_over_budget_call_keeps_its_block() -> None:
    limits = Budgets()
    settled = await GovernanceEnforcer(None, limits).settle(ALLOW, CALL)
    assert isinstance(settled.decision, Deny)
    assert settled.decision.reason == "approval_unavailable"
    assert limits.reserved == [False]


async def test_an_approved_rule_call_then_meets_the_budget_hold_with_audit_merged() -> None:
    limits, operators = Budgets(), Operators(approve=True)
    settled = await GovernanceEnforcer(operators, limits).settle(ASK, CALL)
    assert isinstance(settled.decision, Allow)
    assert [kind for kind, _ in operators.asked] == ["rule", "budget"]
    # both holds, in order: the record takes the budget hold's status and keeps the rule ticket's chain
    assert [(a.status, a.wait_ms, a.chain) for a in settled.approvals] == [
        ("approved", 1.0, {"approval": {"t": 1}}),
        ("approved", 2.0, None),
    ]


def test_peek_reports_the_limits_view_and_waits_for_no_one() -> None:
    operators = Operators(approve=True)
    peeked = GovernanceEnforcer(operators, Budgets()).peek(ASK, CALL)
    assert isinstance(peeked.decision, Allow)
    assert operators.asked == []
