"""Approval tickets as values: the state machine, what was asked, who decided what.

A ticket is bound to one exact call: upstream (mount), tool, SHA-256 of the canonical JSON of its
arguments, session, config hash and expiry. Its :class:`TicketRequest` (a frozen, redacted copy of
the arguments among it) is fixed when it is created; everything else is state the store keeps
(:mod:`helio_proxy.approvals.tickets`).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from helio_proxy.errors import HelioProxyError
from helio_proxy.policy.drift import canonical_json
from helio_proxy.store.base import time_text


class TicketStatus(enum.StrEnum):
    """Where a ticket is in its life."""

    PENDING = "pending"
    """Waiting for operators; a proxy holds the agent's request (``holder``)."""
    ORPHANED = "orphaned"
    """Waiting for operators, but the held request is gone (the proxy stopped or died); an
    approval releases the agent's identical retry."""
    APPROVED = "approved"
    """Quorum reached; the held call (or, when orphaned, an identical retry) runs once."""
    BREAK_GLASS = "break_glass"
    """An admin released it without quorum; runs once, like ``approved``."""
    CONSUMED = "consumed"
    """The approved call was forwarded; the ticket can release nothing more."""
    DENIED = "denied"
    """An operator denied it (one denial is enough, whatever the quorum)."""
    TIMEOUT = "timeout"
    """Nobody decided before it expired (``default_on_timeout`` said what happened to the call)."""
    CLIENT_DISCONNECTED = "client_disconnected"
    """The agent went away while its call was held."""


OPEN: Final = (TicketStatus.PENDING, TicketStatus.ORPHANED)
"""Statuses operators can still decide."""
RELEASABLE: Final = (TicketStatus.APPROVED, TicketStatus.BREAK_GLASS)
"""Statuses that let one call through."""
FINAL: Final = (
    TicketStatus.CONSUMED,
    TicketStatus.DENIED,
    TicketStatus.TIMEOUT,
    TicketStatus.CLIENT_DISCONNECTED,
)
"""Statuses nothing changes any more."""


class TicketConflict(HelioProxyError):
    """A decision that cannot apply to the ticket as it is (resolved, expired, same approver twice)."""


class TicketNotFound(HelioProxyError):
    """No ticket has that id."""


def arguments_digest(arguments: Mapping[str, Any] | None) -> str:
    """SHA-256 (hex) of the canonical JSON of a call's arguments (``{}`` when absent)."""
    return hashlib.sha256(canonical_json(dict(arguments or {}))).hexdigest()


@dataclass(frozen=True, slots=True)
class OperatorDecision:
    """One operator's verdict on a ticket."""

    by: str
    verdict: str
    """``approve``, ``deny`` or ``break_glass``."""
    at: str
    text: str | None = None
    """The approver's comment, the denial reason, or the break-glass reason."""
    via: str | None = None
    """How the operator authenticated (``api_secret``, ``operator``, ``open``, ``slack``)."""

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "verdict": self.verdict, "at": self.at, "text": self.text, "via": self.via}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> OperatorDecision:
        return cls(
            str(value["by"]), str(value["verdict"]), str(value["at"]), value.get("text"), value.get("via")
        )


@dataclass(frozen=True, slots=True)
class TicketRequest:
    """What was asked: fixed when the ticket is created."""

    tool_input_json: str
    """Canonical JSON of the call's arguments, scrubbed by the audit's redaction rules: the frozen
    copy operators see. The ticket's ``arguments_digest`` is taken over the original arguments,
    so the approval still binds the exact values (a secret included) without storing them."""
    matched_rule: str | None
    rule_index: int | None
    channel: str
    timeout_ms: int
    quorum: int
    on_timeout: str
    """``deny`` or ``allow`` (budget tickets: always ``deny``)."""
    reason: str
    """Why approval is needed: ``rule_matched``, ``flag_destructive``, ``tool_definition_drift``, ``budget``."""
    escalation_after_ms: int | None = None
    delegates: tuple[str, ...] = ()
    drifted_aspects: tuple[str, ...] = ()
    breached_budgets: tuple[Mapping[str, Any], ...] = ()

    @property
    def tool_input(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.tool_input_json))

    def to_json(self) -> str:
        return json.dumps(
            {
                "tool_input": json.loads(self.tool_input_json),
                "matched_rule": self.matched_rule,
                "rule_index": self.rule_index,
                "channel": self.channel,
                "timeout_ms": self.timeout_ms,
                "quorum": self.quorum,
                "on_timeout": self.on_timeout,
                "reason": self.reason,
                "escalation_after_ms": self.escalation_after_ms,
                "delegates": list(self.delegates),
                "drifted_aspects": list(self.drifted_aspects),
                "breached_budgets": [dict(b) for b in self.breached_budgets],
            },
            default=str,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> TicketRequest:
        value = json.loads(text)
        return cls(
            tool_input_json=canonical_json(value.get("tool_input") or {}).decode(),
            matched_rule=value.get("matched_rule"),
            rule_index=value.get("rule_index"),
            channel=value.get("channel") or "dashboard",
            timeout_ms=int(value.get("timeout_ms") or 0),
            quorum=int(value.get("quorum") or 1),
            on_timeout=value.get("on_timeout") or "deny",
            reason=value.get("reason") or "rule_matched",
            escalation_after_ms=value.get("escalation_after_ms"),
            delegates=tuple(value.get("delegates") or ()),
            drifted_aspects=tuple(value.get("drifted_aspects") or ()),
            breached_budgets=tuple(value.get("breached_budgets") or ()),
        )


@dataclass(frozen=True, slots=True)
class Ticket:
    """One ``approval_tickets`` row."""

    id: str
    status: TicketStatus
    kind: str
    """``rule`` (a policy asked) or ``budget`` (a budget would be overspent)."""
    created_at: str
    expires_at: str
    tool_name: str
    arguments_digest: str
    request: TicketRequest
    session_id: str | None = None
    agent_id: str | None = None
    config_sha256: str | None = None
    upstream: str | None = None
    """The mount the call was sent to (the ``upstreams:`` entry's name; ``None`` for the single
    ``upstream:`` form). An approval releases the call on this upstream only."""
    decisions: tuple[OperatorDecision, ...] = ()
    resolved_at: str | None = None
    resolved_by: str | None = None
    resolution_reason: str | None = None
    escalated_at: str | None = None
    escalated_to: tuple[str, ...] = ()
    deliveries: Mapping[str, list[Any]] = field(default_factory=dict[str, list[Any]])
    """Per channel reference, what each delivery returned (a Slack message's ``channel`` and ``ts``)."""
    notification_failures: tuple[Mapping[str, Any], ...] = ()
    holder: str | None = None
    holder_seen_at: str | None = None
    consumed_at: str | None = None

    @property
    def approvers(self) -> list[str]:
        """Distinct operators who approved, in order (break-glass invokers included)."""
        seen: list[str] = []
        for decision in self.decisions:
            if decision.verdict in ("approve", "break_glass") and decision.by not in seen:
                seen.append(decision.by)
        return seen

    @property
    def break_glass(self) -> OperatorDecision | None:
        return next((d for d in self.decisions if d.verdict == "break_glass"), None)

    @property
    def denial(self) -> OperatorDecision | None:
        return next((d for d in self.decisions if d.verdict == "deny"), None)

    def expired(self, now: datetime) -> bool:
        return self.expires_at <= time_text(now)

    def to_json(self) -> dict[str, Any]:
        """The API's view of the ticket (the reference's field names, plus ours)."""
        request = self.request
        denial = self.denial
        glass = self.break_glass
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status.value,
            "kind": self.kind,
            "upstream": self.upstream,
            "tool_name": self.tool_name,
            "tool_input": request.tool_input,
            "arguments_digest": self.arguments_digest,
            "matched_rule": request.matched_rule,
            "rule_index": request.rule_index,
            "reason": request.reason,
            "channel_name": request.channel,
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "config_sha256": self.config_sha256,
            "requested_at": self.created_at,
            "timeout_at": self.expires_at,
            "timeout_ms": request.timeout_ms,
            "on_timeout": request.on_timeout,
            "quorum": request.quorum,
            "approvals": [d.to_json() for d in self.decisions if d.verdict == "approve"],
            "approvers": self.approvers,
            "resolved_at": self.resolved_at,
            "resolved_by": self.resolved_by,
            "denial_reason": denial.text if denial else None,
            "break_glass_reason": glass.text if glass else None,
            "escalated_at": self.escalated_at,
            "escalated_to": list(self.escalated_to),
            "notification_failures": [dict(f) for f in self.notification_failures],
            "consumed_at": self.consumed_at,
        }
        if request.breached_budgets:
            out["breached_budgets"] = [dict(b) for b in request.breached_budgets]
        if request.drifted_aspects:
            out["drifted_aspects"] = list(request.drifted_aspects)
        return out


@dataclass(frozen=True, slots=True)
class CallKey:
    """What makes two calls "the same call" for a retry."""

    session_id: str
    upstream: str | None
    """The mount (``None``: the single ``upstream:`` form); the same call on another upstream is
    another call."""
    tool_name: str
    arguments_digest: str
    config_sha256: str | None
    kind: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision to record: ``approve``, ``deny`` or ``break_glass``."""

    by: str
    verdict: str
    text: str | None = None
    via: str | None = None
