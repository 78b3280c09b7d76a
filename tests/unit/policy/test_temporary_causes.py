"""Blocks whose cause is temporary say so and allow a retry; limit blocks that waiting cannot clear
do not tell the agent to wait (issue 19, points 4 and 7)."""

from collections.abc import Callable

from helio_proxy.policy import BaselineCache, CallFacts, CompiledPolicy, DecisionContext, Deny
from helio_proxy.policy.feedback import block_feedback

PolicyFactory = Callable[..., CompiledPolicy]

READS_ONLY = [{"name": "reads", "match": {"annotations": {"readOnlyHint": True}}, "action": "allow"}]


def test_a_read_only_tool_unknown_before_the_first_tools_list_is_blocked_as_temporary(
    make_policy: PolicyFactory,
) -> None:
    policy = make_policy(READS_ONLY, policies_default="deny")
    cache = BaselineCache()
    decision = policy.decide(
        CallFacts("orders.lookup", {}), DecisionContext(tool=cache.facts("orders.lookup"))
    )
    assert isinstance(decision, Deny)
    assert (decision.reason, decision.retry_allowed) == ("baselines_unavailable", True)
    message, data = block_feedback(decision, "orders.lookup")
    assert data["retry_allowed"] is True
    assert data["suggestion"].startswith("Retry in a few seconds")
    assert "not known yet" in message


def test_once_the_tools_were_listed_an_unknown_tool_is_denied_for_good(make_policy: PolicyFactory) -> None:
    policy = make_policy(READS_ONLY, policies_default="deny")
    cache = BaselineCache()
    cache.observe([{"name": "other", "inputSchema": {"type": "object"}}])
    cache.primed = True
    decision = policy.decide(
        CallFacts("orders.lookup", {}), DecisionContext(tool=cache.facts("orders.lookup"))
    )
    assert isinstance(decision, Deny)
    assert (decision.reason, decision.retry_allowed) == ("policy_denied", False)


def test_a_deny_that_does_not_depend_on_annotations_stays_final_before_priming(
    make_policy: PolicyFactory,
) -> None:
    policy = make_policy(
        [{"name": "no-deletes", "match": {"tool": "delete_*"}, "action": "deny"}, *READS_ONLY]
    )
    decision = policy.decide(
        CallFacts("delete_user", {}), DecisionContext(tool=BaselineCache().facts("delete_user"))
    )
    assert isinstance(decision, Deny)
    assert (decision.reason, decision.rule) == ("policy_denied", "no-deletes")


def test_a_spend_block_over_the_limit_alone_does_not_say_wait() -> None:
    over = Deny(
        reason="spend_limited",
        blocked_action="spend_limit",
        retry_allowed=False,
        details={"current_spend": "0", "max_spend": "500", "attempted_amount": "600", "currency": "USD"},
    )
    _, data = block_feedback(over, "create_payment")
    assert "Waiting does not help" in data["suggestion"]
    room = Deny(
        reason="spend_limited", blocked_action="spend_limit", retry_allowed=True, details={"max_spend": "500"}
    )
    _, data = block_feedback(room, "create_payment")
    assert data["suggestion"].startswith("Wait until reset_at")
