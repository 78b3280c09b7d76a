"""What enforcement passes between its stages: the call, the settlement, the gates' protocols.

A neutral module below the gateway: :mod:`helio_proxy.limits` and :mod:`helio_proxy.approvals`
implement :class:`LimitGate` and :class:`ApprovalGate` against these types without importing the
gateway, and the gateway's enforcer (:mod:`helio_proxy.gateway.enforcement`) drives them in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from helio_proxy.jsonrpc import RequestId
from helio_proxy.policy import Allow, Decision, Deny, RateLimit, RequireApproval, SpendLimit
from helio_proxy.policy.facts import CallFacts
from helio_proxy.session.identity import SessionIdentity

log = logging.getLogger("helio_proxy.governance")

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

    over_budget: list[dict[str, Any]] | None = None
    """Set by the limits gate when the only thing in the way is budgets an operator may approve
    over (``on_exceed: require_approval``): each budget's name, limit, current, amount, currency
    and approval route. ``decision`` is then the block that applies if no one can be asked; the
    enforcer asks (:meth:`ApprovalGate.hold_budget`) and reserves again, approved."""

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
