"""Settling a decision that needs more than the policy: approvals, rate and spend limits, budgets.

``decide()`` can return ``RequireApproval``, ``RateLimit`` or ``SpendLimit``; an
:class:`Enforcer` turns every decision into ``Allow`` (forward) or ``Deny`` (block), in the
pipeline's order:

1. **approval hold** (:class:`ApprovalGate`): a ``RequireApproval`` waits for operators; a denial,
   timeout, disconnect or shutdown becomes a ``Deny``, an approval lets the call go on;
2. **limits and budgets** (:class:`LimitGate`): rate and spend limits of the matched rule and every
   budget the call feeds are *reserved* all or nothing; a call over a limit becomes a ``Deny``
   (or, over a budget with ``on_exceed: require_approval``, the enforcer asks operators through
   the approval gate and, once approved, reserves again with the budget waived).

The order is written once, as the pure :func:`route`; :meth:`GovernanceEnforcer.settle` follows
it with side effects, :meth:`GovernanceEnforcer.peek` (dry-run) without. The types passed
between stages live in the neutral :mod:`helio_proxy.governance`, so ``limits`` and ``approvals``
never import the gateway.

What each gate concluded travels as typed facts on the returned :class:`Settlement`
(``approvals``: every hold in order; ``limits``: the charges checked), never as record fields.
What was reserved is a :class:`Reservation` on it: the pipeline
commits it once the call was delivered upstream and releases it when the call never got there
(blocked later, upstream unreachable), so only forwarded calls are charged.

Without an approval gate or a limit gate (``None``), calls that need one fail closed with
``approval_unavailable`` / ``limits_unavailable`` rather than pass unchecked.
"""

from __future__ import annotations

from typing import Literal

from helio_proxy.config import HelioConfig
from helio_proxy.governance import (
    ApprovalGate,
    Enforcer,
    GovernedCall,
    LimitGate,
    Reservation,
    Settled,
    Settlement,
    commit_now,
    settle_reservations,
)
from helio_proxy.policy import Allow, Decision, Deny, DryRun, RateLimit, RequireApproval, SpendLimit
from helio_proxy.values import value

__all__ = [
    "UNAVAILABLE_ACTIONS",
    "ApprovalGate",
    "Enforcer",
    "FailClosedEnforcer",
    "GovernanceEnforcer",
    "GovernedCall",
    "LimitGate",
    "Reservation",
    "Settled",
    "Settlement",
    "commit_now",
    "fail_closed_warnings",
    "settle_reservations",
]


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


def _allowed(decision: RequireApproval) -> Allow:
    """An approved call goes on as an ``Allow`` of the same rule."""
    return Allow(
        rule=decision.rule,
        rule_index=decision.rule_index,
        reason=decision.reason,
        flagged_destructive=decision.flagged_destructive,
        drifted_aspects=decision.drifted_aspects,
    )


Step = Literal["settled", "hold", "limits"]


@value
class Route:
    """Where a decision goes next, decided once for :meth:`GovernanceEnforcer.settle` and ``peek``.

    ``settled``: ``decision`` is final (a block, or an allow with no limits gate to ask);
    ``hold``: wait for operators, then ``limits`` with ``decision`` (the approved call's ``Allow``);
    ``limits``: reserve capacity for ``decision`` (``Allow``, ``RateLimit`` or ``SpendLimit``).
    """

    step: Step
    decision: Settled | Allow | RateLimit | SpendLimit
    held: RequireApproval | None = None


def route(decision: Decision, *, approvals: bool, limits: bool) -> Route:
    """The pure part of enforcement: which gate a decision meets, given which gates run."""
    match decision:
        case DryRun():
            return route(decision.would, approvals=approvals, limits=limits)
        case Deny():
            return Route("settled", decision)
        case RequireApproval():
            if not approvals:
                return Route("settled", _unavailable(decision))
            return _limits_route(_allowed(decision), limits, held=decision)
        case Allow() | RateLimit() | SpendLimit():
            return _limits_route(decision, limits)


def _limits_route(
    decision: Allow | RateLimit | SpendLimit, limits: bool, *, held: RequireApproval | None = None
) -> Route:
    if held is not None:
        return Route("hold", decision, held)
    if limits:
        return Route("limits", decision)
    return Route("settled", decision if isinstance(decision, Allow) else _unavailable(decision))


class GovernanceEnforcer:
    """The whole order after the policy: approval hold, then limits and budgets (and, for a budget
    an operator may approve over, the budget's approval hold and a second, approved reservation).

    A missing gate fails its calls closed.
    """

    def __init__(self, approvals: ApprovalGate | None = None, limits: LimitGate | None = None) -> None:
        self.approvals = approvals
        self.limits = limits

    def settled(self, decision: Decision) -> Settlement | None:
        if decision.__class__ is not Allow:
            return None
        assert isinstance(decision, Allow)
        if self.limits is not None and not self.limits.charges_nothing(decision):
            return None
        return Settlement(decision)  # what settle() gives it, without the route and two awaits

    def route(self, decision: Decision) -> Route:
        return route(decision, approvals=self.approvals is not None, limits=self.limits is not None)

    async def settle(self, decision: Decision, call: GovernedCall) -> Settlement:
        step = self.route(decision)
        if step.step == "settled":
            assert isinstance(step.decision, Allow | Deny)
            return Settlement(step.decision)
        limited = step.decision
        assert isinstance(limited, Allow | RateLimit | SpendLimit)
        if step.held is not None:
            assert self.approvals is not None
            held = await self.approvals.hold(step.held, call)
            if isinstance(held.decision, Deny):
                return held
            after = await self._limits(limited, call)
            after.approvals = held.approvals + after.approvals
            return after
        return await self._limits(limited, call)

    async def _limits(self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall) -> Settlement:
        if self.limits is None:
            return Settlement(decision if isinstance(decision, Allow) else _unavailable(decision))
        reserved = await self.limits.reserve(decision, call)
        breached = reserved.over_budget
        if breached is None or self.approvals is None:
            return reserved  # over a budget with no one to ask: its block stands (approval_unavailable)
        held = await self.approvals.hold_budget(decision, call, breached)
        if isinstance(held.decision, Deny):
            held.limits = reserved.limits
            return held
        again = await self.limits.reserve(decision, call, approved=True)
        again.approvals = held.approvals + again.approvals
        return again

    def peek(self, decision: Decision, call: GovernedCall) -> Settlement:
        """What :meth:`settle` would answer, consuming nothing and waiting for no one (dry-run):
        a call sent to approval reports what the limits would say once approved."""
        step = self.route(decision)
        if step.step == "settled":
            assert isinstance(step.decision, Allow | Deny)
            return Settlement(step.decision)
        limited = step.decision
        assert isinstance(limited, Allow | RateLimit | SpendLimit)
        if self.limits is None:
            return Settlement(limited if isinstance(limited, Allow) else _unavailable(limited))
        return self.limits.peek(limited, call)


class FailClosedEnforcer(GovernanceEnforcer):
    """No approval channel and no limit counters: every call that needs one is blocked."""

    def __init__(self) -> None:
        super().__init__(None, None)


UNAVAILABLE_ACTIONS = ("require_approval", "rate_limit", "spend_limit")
"""Actions that :class:`FailClosedEnforcer` blocks (reported by startup warnings)."""


def fail_closed_warnings(config: HelioConfig, *, approvals: bool = False, limits: bool = False) -> list[str]:
    """Startup/reload warnings for every rule or switch this proxy can only block.

    ``approvals`` / ``limits``: whether those gates run (then their actions draw no warning).
    """
    missing = {
        action
        for action in UNAVAILABLE_ACTIONS
        if not (approvals if action == "require_approval" else limits)
    }
    out: list[str] = []
    for index, rule in enumerate(config.policies.rules):
        label = f"policies.rules[{index}]" + (f" ({rule.name!r})" if rule.name else "")
        if rule.action in missing:
            reason = "approval_unavailable" if rule.action == "require_approval" else "limits_unavailable"
            out.append(
                f"{label} uses '{rule.action}', which this proxy cannot enforce yet: "
                f"matching calls are blocked ({reason})"
            )
    policies = config.policies
    if "require_approval" in missing:
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
