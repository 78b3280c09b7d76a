"""What a held call's outcome means for the pipeline: a :class:`Settlement` with approval facts.

An approved (or break-glass, or timed-out under ``default_on_timeout: allow``) call becomes an
``Allow`` of the same rule; anything else a ``Deny`` whose ``details`` name the ticket. Either way
the settlement carries one :class:`~helio_proxy.governance.ApprovalFacts`: the status, who
approved, how long the call waited and the ticket's ``evidence_chain`` blocks (``approval``, plus
``break_glass``, ``budget_approval``, ``tool_drift`` when they apply).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from helio_proxy.approvals.model import Ticket
from helio_proxy.governance import ApprovalFacts, Settlement
from helio_proxy.policy import Allow, Decision, Deny


def approval_chain(ticket: Ticket, *, retry: bool) -> dict[str, Any]:
    """The ``evidence_chain`` sub-blocks for a ticket (``retry``: released by the agent's retry)."""
    chain: dict[str, Any] = {
        "approval": {
            "ticket_id": ticket.id,
            "kind": ticket.kind,
            "status": ticket.status.value,
            "upstream": ticket.upstream,
            "approvers": ticket.approvers,
            "quorum": ticket.request.quorum,
            "channel": ticket.request.channel,
            "requested_at": ticket.created_at,
            "resolved_at": ticket.resolved_at,
            "escalated_at": ticket.escalated_at,
            "escalated_to": list(ticket.escalated_to),
            "arguments_digest": ticket.arguments_digest,
            "config_sha256": ticket.config_sha256,
            "retry": retry,
        }
    }
    comments = [{"by": d.by, "text": d.text} for d in ticket.decisions if d.verdict == "approve" and d.text]
    if comments:
        chain["approval"]["comments"] = comments
    glass = ticket.break_glass
    if glass is not None:
        chain["break_glass"] = {"reason": glass.text, "invoked_by": glass.by}
    if ticket.request.breached_budgets:
        chain["budget_approval"] = {"breached_budgets": [dict(b) for b in ticket.request.breached_budgets]}
    if ticket.request.drifted_aspects:
        chain["tool_drift"] = {"drifted_aspects": list(ticket.request.drifted_aspects)}
    return chain


def released(
    decision: Decision, ticket: Ticket, waited: float, *, retry: bool, status: str | None = None
) -> Settlement:
    """The call goes on (``status`` overrides ``approved``/``break_glass``, e.g. ``timeout``)."""
    outcome = status or ("break_glass" if ticket.break_glass is not None else "approved")
    allowed = Allow(
        rule=decision.rule,
        rule_index=decision.rule_index,
        reason=decision.reason,
        flagged_destructive=decision.flagged_destructive,
        drifted_aspects=decision.drifted_aspects,
    )
    facts = ApprovalFacts(
        status=outcome,
        wait_ms=round(waited, 3),
        approved_by=",".join(ticket.approvers) if ticket.approvers else None,
        chain=approval_chain(ticket, retry=retry),
    )
    return Settlement(allowed, approvals=(facts,))


APPROVAL_CAPACITY_EXHAUSTED: Final = "approval_capacity_exhausted"
"""The block reason of a call that would open one more ticket than ``approval.max_pending``."""


def blocked(
    decision: Decision,
    ticket: Ticket | None,
    reason: str,
    waited: float,
    *,
    details: Mapping[str, Any] | None = None,
) -> Settlement:
    """The call is blocked with ``reason`` (``approval_denied``, ``approval_timeout``, ...);
    ``details`` are added to the block's fields."""
    fields: dict[str, Any] = {"ticket_id": ticket.id if ticket else None, **(details or {})}
    if ticket is not None and reason == "approval_denied" and ticket.denial is not None:
        fields["denied_by"] = ticket.denial.by
        fields["denial_reason"] = ticket.denial.text
    if ticket is not None and reason == "approval_timeout":
        fields["timeout_seconds"] = ticket.request.timeout_ms / 1000
    deny = Deny(
        rule=decision.rule,
        rule_index=decision.rule_index,
        reason=reason,
        blocked_action="require_approval",
        retry_allowed=reason != "approval_denied",
        flagged_destructive=decision.flagged_destructive,
        details=fields,
    )
    facts = ApprovalFacts(
        status=reason.removeprefix("approval_"),
        wait_ms=round(waited, 3),
        chain=approval_chain(ticket, retry=False) if ticket is not None else None,
    )
    return Settlement(deny, approvals=(facts,))
