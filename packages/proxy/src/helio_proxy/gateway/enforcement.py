"""Settling a decision that needs more than the policy: approvals, rate and spend limits.

``decide()`` can return ``RequireApproval``, ``RateLimit`` or ``SpendLimit``; an
:class:`Enforcer` turns those into ``Allow`` (forward) or ``Deny`` (block). Approvals and limits
arrive in later parts; until then :class:`FailClosedEnforcer` blocks such calls with
``approval_unavailable`` / ``limits_unavailable`` rather than let them through unchecked.
"""

from __future__ import annotations

from typing import Protocol

from helio_proxy.config import HelioConfig
from helio_proxy.policy import Allow, Decision, Deny, DryRun, RateLimit, RequireApproval, SpendLimit
from helio_proxy.policy.facts import CallFacts

Settled = Allow | Deny


class Enforcer(Protocol):
    """Decides what a call that passed the policy finally meets."""

    async def settle(self, decision: Decision, call: CallFacts) -> Settled:
        """Hold for approval and/or consume limit capacity; ``Allow`` means forward now."""
        ...

    def peek(self, decision: Decision, call: CallFacts) -> Settled:
        """What :meth:`settle` would answer, consuming nothing and waiting for no one (dry-run)."""
        ...


def _unavailable(decision: RequireApproval | RateLimit | SpendLimit) -> Deny:
    reason = "approval_unavailable" if isinstance(decision, RequireApproval) else "limits_unavailable"
    return Deny(
        rule=decision.rule,
        rule_index=decision.rule_index,
        reason=reason,
        blocked_action=decision.action,
        feedback=decision.feedback,
        retry_allowed=False,
        drifted_aspects=decision.drifted_aspects,
    )


class FailClosedEnforcer:
    """No approval channel and no limit counters: every such call is blocked."""

    async def settle(self, decision: Decision, call: CallFacts) -> Settled:
        return self.peek(decision, call)

    def peek(self, decision: Decision, call: CallFacts) -> Settled:
        match decision:
            case Allow() | Deny():
                return decision
            case RequireApproval() | RateLimit() | SpendLimit():
                return _unavailable(decision)
            case DryRun():
                return self.peek(decision.would, call)


UNAVAILABLE_ACTIONS = ("require_approval", "rate_limit", "spend_limit")
"""Actions that :class:`FailClosedEnforcer` blocks (reported by startup warnings)."""


def fail_closed_warnings(config: HelioConfig) -> list[str]:
    """Startup/reload warnings for every rule or switch that this build can only block."""
    out: list[str] = []
    for index, rule in enumerate(config.policies.rules):
        label = f"policies.rules[{index}]" + (f" ({rule.name!r})" if rule.name else "")
        if rule.action in UNAVAILABLE_ACTIONS:
            reason = "approval_unavailable" if rule.action == "require_approval" else "limits_unavailable"
            out.append(
                f"{label} uses '{rule.action}', which this proxy cannot enforce yet: "
                f"matching calls are blocked ({reason})"
            )
    policies = config.policies
    if policies.flag_destructive == "require_approval":
        out.append(
            "policies.flag_destructive 'require_approval' cannot be granted yet: unmatched destructive "
            "calls are blocked (approval_unavailable)"
        )
    if policies.on_tool_drift == "require_approval":
        out.append(
            "policies.on_tool_drift 'require_approval' cannot be granted yet: calls to drifted tools "
            "are blocked (approval_unavailable)"
        )
    return out
