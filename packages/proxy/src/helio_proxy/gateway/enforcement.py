"""Settling a decision that needs more than the policy: approvals, rate and spend limits, budgets.

``decide()`` can return ``RequireApproval``, ``RateLimit`` or ``SpendLimit``; an
:class:`Enforcer` turns every decision into ``Allow`` (forward) or ``Deny`` (block), in the
pipeline's order:

1. **approval hold** (:class:`ApprovalGate`): a ``RequireApproval`` waits for operators; a denial,
   timeout, disconnect or shutdown becomes a ``Deny``, an approval lets the call go on;
2. **limits and budgets** (:class:`LimitGate`): rate and spend limits of the matched rule and every
   budget the call feeds are *reserved* all or nothing; a call over a limit becomes a ``Deny``
   (or, for a budget with ``on_exceed: require_approval``, goes back to the approval gate).

What was reserved is a :class:`Reservation` on the returned :class:`Settlement`: the pipeline
commits it once the call was delivered upstream and releases it when the call never got there
(blocked later, upstream unreachable), so only forwarded calls are charged.

Without an approval gate or a limit gate (``None``), calls that need one fail closed with
``approval_unavailable`` / ``limits_unavailable`` rather than pass unchecked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from helio_proxy.config import HelioConfig
from helio_proxy.jsonrpc import RequestId
from helio_proxy.policy import Allow, Decision, Deny, DryRun, RateLimit, RequireApproval, SpendLimit
from helio_proxy.policy.facts import CallFacts
from helio_proxy.session.identity import SessionIdentity

log = logging.getLogger("helio_proxy.gateway.enforcement")

Settled = Allow | Deny


@dataclass(frozen=True, slots=True)
class GovernedCall:
    """One ``tools/call`` on its way through enforcement, with what tickets and limits bind to."""

    facts: CallFacts
    """Tool, arguments, upstream and session id, as the policy saw them."""

    identity: SessionIdentity
    """How the session id was resolved (``facts.session_id`` is its value)."""

    request_id: RequestId
    """The agent's JSON-RPC id."""

    raw: bytes = b""
    """The request exactly as received; what is forwarded if the call goes ahead."""

    config_sha256: str = ""
    """Hash of the config in force when the call arrived (a ticket is bound to it)."""

    agent_id: str | None = None
    """The authenticated agent, once per-agent auth exists on the MCP port."""

    audit_id: str | None = None
    """Id of the call's audit record (limit and budget ledger rows point at it)."""


class Reservation(Protocol):
    """Capacity taken from limits/budgets for one call, not yet final."""

    async def commit(self) -> None:
        """The call was delivered upstream: keep the charge."""
        ...

    async def release(self) -> None:
        """The call never reached the upstream: give the capacity back."""
        ...


@dataclass(slots=True)
class Settlement:
    """What enforcement concluded for one call."""

    decision: Settled
    """``Allow``: forward now. ``Deny``: answer with this block."""

    audit: dict[str, Any] = field(default_factory=dict[str, Any])
    """Extra fields for the call's audit record (``CallAudit.decide`` keywords: ``approval_status``,
    ``approved_by``, ``approval_wait_ms``, ``evidence_chain``, ``metadata``)."""

    reservations: list[Reservation] = field(default_factory=list[Reservation])
    """Limit/budget capacity held for this call (empty when it is blocked)."""

    def take(self) -> list[Reservation]:
        """Hand over the reservations to settle (each is settled exactly once)."""
        taken, self.reservations = self.reservations, []
        return taken

    async def delivered(self) -> None:
        """Commit every reservation still held (the upstream got the call)."""
        await settle_reservations(self.take(), delivered=True)

    async def undelivered(self) -> None:
        """Release every reservation still held (the call never reached the upstream)."""
        await settle_reservations(self.take(), delivered=False)


async def settle_reservations(reservations: list[Reservation], *, delivered: bool) -> None:
    """Commit (``delivered``) or release each reservation; one failing never stops the others."""
    for reservation in reservations:
        try:
            await (reservation.commit() if delivered else reservation.release())
        except Exception:  # the reply is decided already; a failed settlement is logged, not raised
            log.exception("settling a limit reservation failed (delivered=%s)", delivered)


def merge_audit(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Audit fields from two stages: dict values (``evidence_chain``, ``metadata``) are merged key
    by key, so the approval's ``evidence_chain.approval`` survives the limits' fields."""
    merged = dict(first)
    for key, value in second.items():
        earlier = merged.get(key)
        if isinstance(earlier, dict) and isinstance(value, dict):
            merged[key] = {**earlier, **value}
        else:
            merged[key] = value
    return merged


class ApprovalGate(Protocol):
    """Holds calls for human approval (issue: approvals)."""

    async def hold(self, decision: RequireApproval, call: GovernedCall) -> Settlement:
        """Wait for the ticket's outcome: ``Allow`` when approved (or break-glass), else a ``Deny``
        with reason ``approval_denied`` / ``approval_timeout`` / ... and audit fields either way."""
        ...

    async def hold_budget(
        self, decision: Decision, call: GovernedCall, breached: list[dict[str, Any]]
    ) -> Settlement:
        """A budget with ``on_exceed: require_approval`` would be overspent: ask operators.

        ``breached`` describes each budget (name, limit, current, amount, currency, approval route).
        Budget tickets always fail closed on timeout."""
        ...


class LimitGate(Protocol):
    """Rate limits, spend limits and budgets (issue: limits)."""

    async def reserve(
        self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall, *, approved: bool = False
    ) -> Settlement:
        """Take capacity for the call from its rule's limit and every matching budget, all or nothing.

        ``approved``: an operator already approved this call over a budget (charge it anyway)."""
        ...

    def peek(self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall) -> Settlement:
        """What :meth:`reserve` would answer, taking nothing (dry-run)."""
        ...


class Enforcer(Protocol):
    """Decides what a call that passed the policy finally meets."""

    async def settle(self, decision: Decision, call: GovernedCall) -> Settlement:
        """Hold for approval and/or reserve limit capacity; ``Allow`` means forward now."""
        ...

    def peek(self, decision: Decision, call: GovernedCall) -> Settlement:
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


def _allowed(decision: RequireApproval) -> Allow:
    """An approved call goes on as an ``Allow`` of the same rule."""
    return Allow(
        rule=decision.rule,
        rule_index=decision.rule_index,
        reason=decision.reason,
        flagged_destructive=decision.flagged_destructive,
        drifted_aspects=decision.drifted_aspects,
    )


class GovernanceEnforcer:
    """Approval hold, then limits and budgets; a missing gate fails its calls closed."""

    def __init__(self, approvals: ApprovalGate | None = None, limits: LimitGate | None = None) -> None:
        self.approvals = approvals
        self.limits = limits

    async def settle(self, decision: Decision, call: GovernedCall) -> Settlement:
        match decision:
            case Deny():
                return Settlement(decision)
            case DryRun():
                return self.peek(decision.would, call)
            case RequireApproval():
                if self.approvals is None:
                    return Settlement(_unavailable(decision))
                held = await self.approvals.hold(decision, call)
                if isinstance(held.decision, Deny):
                    return held
                after = await self._limits(_allowed(decision), call, approved=False)
                after.audit = merge_audit(held.audit, after.audit)
                return after
            case Allow() | RateLimit() | SpendLimit():
                return await self._limits(decision, call, approved=False)

    async def _limits(
        self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall, *, approved: bool
    ) -> Settlement:
        if self.limits is None:
            if isinstance(decision, Allow):
                return Settlement(decision)
            return Settlement(_unavailable(decision))
        return await self.limits.reserve(decision, call, approved=approved)

    def peek(self, decision: Decision, call: GovernedCall) -> Settlement:
        match decision:
            case Deny():
                return Settlement(decision)
            case DryRun():
                return self.peek(decision.would, call)
            case RequireApproval():
                if self.approvals is None:
                    return Settlement(_unavailable(decision))
                # A dry run never waits for a human: report what the limits would say after approval.
                return self._peek_limits(_allowed(decision), call)
            case Allow() | RateLimit() | SpendLimit():
                return self._peek_limits(decision, call)

    def _peek_limits(self, decision: Allow | RateLimit | SpendLimit, call: GovernedCall) -> Settlement:
        if self.limits is None:
            return Settlement(decision if isinstance(decision, Allow) else _unavailable(decision))
        return self.limits.peek(decision, call)


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
