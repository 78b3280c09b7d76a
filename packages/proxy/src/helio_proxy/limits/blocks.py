"""The ``Deny`` values limits and budgets block with; their ``details`` become the block's ``data``.

=====================  =================================================================  =========
reason                 details                                                            retry
=====================  =================================================================  =========
``rate_limited``       ``current_calls, max_calls, window_seconds, reset_at``              true
``spend_limited``      ``current_spend, max_spend, attempted_amount, currency,             true when the amount
                       window_seconds, reset_at`` (amounts are decimal strings)            fits an empty window
``spend_limited``      ``invalid_amount`` (``missing``, ``not_a_number``, ``not_finite``,   true
(invalid amount)       ``negative``), ``field``, ``max_spend``, ``currency``,
                       ``window_seconds``, ``reset_at`` (now)
``budget_exceeded``    ``budgets: [{name, limit, spent, remaining, attempted_amount,        true when every
                       currency, window, on_exceed, reset_at} | {name, reason:              breached window is
                       invalid_amount, invalid_amount, ...}]``                             a duration
``session_unresolved`` ``limit_kind`` (``rate``, ``spend``, ``budget``), ``limit``          false
``limits_unavailable`` none (the store could not be reached: fail closed)                 false
=====================  =================================================================  =========

``reset_at`` is ISO 8601 UTC: when the oldest charge in the window ages out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from helio_proxy.limits.amounts import decimal_text
from helio_proxy.limits.charges import InvalidCharge, Unresolved
from helio_proxy.limits.ledger import Check
from helio_proxy.policy import Allow, Deny, RateLimit, SpendLimit

Limited = Allow | RateLimit | SpendLimit


def iso(moment: datetime | None) -> str | None:
    """``2026-01-01T10:00:00.000Z`` (``None`` stays ``None``)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _deny(
    decision: Limited, reason: str, action: str, *, retry: bool, details: dict[str, Any] | None, own: bool
) -> Deny:
    return Deny(
        rule=decision.rule,
        rule_index=decision.rule_index,
        reason=reason,
        blocked_action=action,
        # The rule's own feedback speaks for blocks the rule caused (its limit), not for budgets.
        feedback=decision.feedback if own else None,
        retry_allowed=retry,
        flagged_destructive=decision.flagged_destructive,
        drifted_aspects=decision.drifted_aspects,
        details=details,
    )


def rate_limited(decision: Limited, check: Check, now: datetime) -> Deny:
    charge = check.charge
    return _deny(
        decision,
        "rate_limited",
        "rate_limit",
        retry=True,
        own=True,
        details={
            "current_calls": check.usage.count,
            "max_calls": int(charge.limit),
            "window_seconds": charge.window.seconds,
            "reset_at": iso(check.usage.reset_at(charge.window, now)),
        },
    )


def spend_limited(decision: Limited, check: Check, now: datetime) -> Deny:
    charge = check.charge
    return _deny(
        decision,
        "spend_limited",
        "spend_limit",
        retry=charge.amount <= charge.limit,
        own=True,
        details={
            "current_spend": decimal_text(check.usage.total),
            "max_spend": decimal_text(charge.limit),
            "attempted_amount": decimal_text(charge.amount),
            "currency": charge.currency,
            "window_seconds": charge.window.seconds,
            "reset_at": iso(check.usage.reset_at(charge.window, now)),
        },
    )


def invalid_spend(decision: Limited, invalid: InvalidCharge, now: datetime) -> Deny:
    assert invalid.limits is not None
    assert invalid.limits.max_spend is not None
    spend = invalid.limits.max_spend
    return _deny(
        decision,
        "spend_limited",
        "spend_limit",
        retry=True,
        own=True,
        details={
            "invalid_amount": invalid.invalid.code,
            "field": spend.field,
            "max_spend": decimal_text(spend.limit),
            "currency": spend.currency,
            "window_seconds": spend.window.seconds,
            "reset_at": iso(now),
        },
    )


def budget_entry(check: Check, now: datetime) -> dict[str, Any]:
    """How one budget stands against a call (``budgets[]`` of a block, a ticket's breached list)."""
    charge = check.charge
    budget = charge.budget
    assert budget is not None
    spent = check.usage.total
    return {
        "name": budget.name,
        "limit": decimal_text(charge.limit),
        "spent": decimal_text(spent),
        "remaining": decimal_text(max(charge.limit - spent, Decimal(0))),
        "attempted_amount": decimal_text(charge.amount),
        "currency": charge.currency,
        "window": budget.window,
        "on_exceed": budget.on_exceed,
        "reset_at": iso(check.usage.reset_at(charge.window, now)),
        "epoch": int(charge.bucket.version) if charge.bucket.version else None,
    }


def invalid_budget_entry(invalid: InvalidCharge) -> dict[str, Any]:
    assert invalid.budget is not None
    budget = invalid.budget.config
    return {
        "name": budget.name,
        "reason": "invalid_amount",
        "invalid_amount": invalid.invalid.code,
        "limit": decimal_text(budget.limit),
        "currency": budget.currency,
        "window": budget.window,
        "on_exceed": budget.on_exceed,
    }


def budget_exceeded(
    decision: Limited, checks: list[Check], invalid: list[InvalidCharge], now: datetime
) -> Deny:
    """Blocked by budgets: every breached (or unchargeable) budget is listed."""
    entries = [invalid_budget_entry(i) for i in invalid] + [budget_entry(c, now) for c in checks]
    retry = not invalid and all(
        not c.charge.window.is_session and c.charge.amount <= c.charge.limit for c in checks
    )
    # An invalid amount or a `deny` budget blocks outright; only `require_approval` budgets left
    # means the approval could not be had.
    waivable = not invalid and all(c.charge.waivable for c in checks)
    return _deny(
        decision,
        "budget_exceeded",
        "require_approval" if waivable else "deny",
        retry=retry,
        own=False,
        details={"budgets": entries},
    )


def budget_approval_unavailable(decision: Limited, checks: list[Check], now: datetime) -> Deny:
    """``on_exceed: require_approval`` and no approval channel in this proxy."""
    return _deny(
        decision,
        "approval_unavailable",
        "require_approval",
        retry=False,
        own=False,
        details={"budgets": [budget_entry(c, now) for c in checks]},
    )


def session_unresolved(decision: Limited, unresolved: Unresolved) -> Deny:
    return _deny(
        decision,
        "session_unresolved",
        decision.action if unresolved.kind == "budget" else f"{unresolved.kind}_limit",
        retry=False,
        own=False,
        details={"limit_kind": unresolved.kind, "limit": unresolved.owner},
    )


def limits_unavailable(decision: Limited) -> Deny:
    """The store could not be reached: the call is blocked, never let through unchecked.

    The cause is temporary, so the reason says so (``store_unavailable``) and a retry is allowed."""
    return _deny(
        decision,
        "store_unavailable",
        decision.action,
        retry=True,
        own=False,
        details=None,
    )
