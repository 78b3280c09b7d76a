"""Decisions: what the policy says about one call, as frozen values.

::

    Decision = Allow | Deny | RequireApproval | RateLimit | SpendLimit | DryRun

Each carries the rule that produced it (``rule`` name and ``rule_index``, both ``None`` when
no rule matched) and a ``reason`` code. ``Deny`` is the only blocking value ``decide()``
returns; the gateway turns ``RequireApproval``/``RateLimit``/``SpendLimit`` into a forward or a
``Deny`` once approvals and limits have had their say. Only the edge renders a ``Deny`` as a
JSON-RPC error (:mod:`helio_proxy.policy.feedback`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from helio_proxy.config.policies import ApprovalRoute, Feedback, Limits
from helio_proxy.evidence.gates import GateResult

SEVERITY: Final = {
    "allow": 0,
    "rate_limit": 1,
    "spend_limit": 2,
    "dry_run": 3,
    "require_approval": 4,
    "deny": 5,
}
"""How strict each action is (the stricter decision wins when drift is only logged)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Decision:
    rule: str | None = None
    """Name of the rule that decided (``rule-<index>`` for an unnamed rule); ``None`` when none matched."""

    rule_index: int | None = None
    """Position of that rule in ``policies.rules``."""

    reason: str
    """Why: ``rule_matched``, ``default``, ``flag_destructive``, ``tool_definition_drift``, or a block reason."""

    feedback: Feedback | None = None
    """The rule's own feedback, used when the call is blocked."""

    flagged_destructive: bool = False
    """No rule matched a destructive tool and ``flag_destructive: log`` asked to flag it."""

    drifted_aspects: tuple[str, ...] = ()
    """The tool's definition changed (``on_tool_drift: log`` let the call through, or it was blocked)."""

    gate: GateResult | None = None
    """The gate check of the matched rule: what is unmet (a ``Deny``), or what met it (any other
    decision of a gate rule, for the audit record)."""

    action: ClassVar[str]

    @property
    def blocks(self) -> bool:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Allow(_Decision):
    action: ClassVar[str] = "allow"


@dataclass(frozen=True, slots=True, kw_only=True)
class Deny(_Decision):
    """The call is blocked; the fields below become the feedback's reason-specific data."""

    action: ClassVar[str] = "deny"

    blocked_action: str = "deny"
    """The action reported to the agent (``require_approval`` when no approver could be reached...)."""

    retry_allowed: bool = False
    policy_reason: str | None = None
    """For ``policy_denied``: ``rule_deny``, ``default_deny`` or ``session_unresolved``."""

    details: Mapping[str, Any] | None = None
    """Reason-specific feedback fields added to the block's ``data`` as they are (limits:
    ``current_calls``, ``max_calls``, ``window_seconds``, ``reset_at``; approvals: ``ticket_id``...)."""

    @property
    def blocks(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class RequireApproval(_Decision):
    """A human must approve first (from a rule, ``flag_destructive`` or ``on_tool_drift``)."""

    action: ClassVar[str] = "require_approval"
    route: ApprovalRoute | None = None
    """The rule's ``approval`` block; ``None`` means the dashboard channel and ``approval.timeout``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit(_Decision):
    action: ClassVar[str] = "rate_limit"
    limits: Limits


@dataclass(frozen=True, slots=True, kw_only=True)
class SpendLimit(_Decision):
    action: ClassVar[str] = "spend_limit"
    limits: Limits


@dataclass(frozen=True, slots=True, kw_only=True)
class DryRun(_Decision):
    """Simulate: run every check, forward nothing, answer with what would have happened."""

    action: ClassVar[str] = "dry_run"
    would: Decision
    """The decision that would be enforced without dry-run (never a ``DryRun``)."""

    global_switch: bool
    """From ``policies.dry_run`` (``True``) or a rule's ``action: dry_run`` (``False``)."""

    @property
    def policy_decision(self) -> str:
        """The action reported in the simulated result (``dry_run`` for a dry-run rule)."""
        return "dry_run" if not self.global_switch and isinstance(self.would, Allow) else self.would.action


Decision = Allow | Deny | RequireApproval | RateLimit | SpendLimit | DryRun
