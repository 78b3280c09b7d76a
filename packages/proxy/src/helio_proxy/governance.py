"""What enforcement passes between its stages: the call, the settlement, the typed outcome.

A neutral module below the gateway: :mod:`helio_proxy.limits` and :mod:`helio_proxy.approvals`
implement :class:`LimitGate` and :class:`ApprovalGate` against these types without importing the
gateway, and the gateway's enforcer (:mod:`helio_proxy.gateway.enforcement`) drives them in order.

What each stage learns is a typed fact (:class:`ApprovalFacts`, :class:`LimitFacts`), carried on
the :class:`Settlement` and then on the call's :class:`CallOutcome`; the audit recorder
(:mod:`helio_proxy.audit.recorder`) turns the outcome into the call's one record at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from helio_proxy.jsonrpc import RequestId
from helio_proxy.policy import Allow, Decision, Deny, RateLimit, RequireApproval, SpendLimit
from helio_proxy.policy.facts import CallFacts
from helio_proxy.session.identity import SessionIdentity
from helio_proxy.values import value

log = logging.getLogger("helio_proxy.governance")

Settled = Allow | Deny


@value
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

    audit_id: UUID | None = None
    """Id of the call's audit record (limit and budget ledger rows point at it). A ``UUID``, made
    text only by what stores it: most calls reserve nothing."""

    @property
    def audit_ref(self) -> str | None:
        """:attr:`audit_id` as a ledger row holds it."""
        return str(self.audit_id) if self.audit_id is not None else None


@dataclass(frozen=True, slots=True)
class ApprovalFacts:
    """What one approval hold (a rule's ``require_approval`` or a budget's) concluded."""

    status: str
    """``approved``, ``break_glass``, ``timeout`` (released on timeout), ``denied``, ``timeout``
    (blocked), ``capacity_exhausted``, ``client_disconnected``, ``shutdown_cancelled``..."""

    wait_ms: float
    """How long the call waited for operators."""

    approved_by: str | None = None
    """The approvers, comma-separated (``None`` when no one approved)."""

    chain: Mapping[str, Any] | None = None
    """The ticket's ``evidence_chain`` blocks (``approval``, ``break_glass``, ``budget_approval``,
    ``tool_drift``), as the record stores them; ``None`` without a ticket."""


@value
class ChargeFacts:
    """One limit or budget charge the call was checked against."""

    kind: str
    """``rate``, ``spend`` or ``budget``."""
    name: str
    """The rule or budget that owns the bucket."""
    bucket: str
    """The bucket's ledger key."""
    amount: str
    used_before: str
    limit: str
    window: str
    fits: bool
    currency: str | None = None
    epoch: int | None = None
    """A budget's epoch (``None`` for rate and spend limits)."""


@dataclass(frozen=True, slots=True)
class InvalidAmountFacts:
    """A spend or budget amount that could not be read from the call's arguments."""

    kind: str
    name: str
    code: str
    detail: str


@value
class LimitFacts:
    """What the limits gate checked for one call (``metadata.limits`` of its record)."""

    charged: bool
    """Whether the charges were taken (reserved for the call)."""
    charges: tuple[ChargeFacts, ...] = ()
    invalid: tuple[InvalidAmountFacts, ...] = ()
    session_unresolved: tuple[str, str] | None = None
    """``(kind, name)`` of a session-keyed limit the call has no session for."""


class Reservation(Protocol):
    """Capacity taken from limits/budgets for one call, not yet final."""

    async def commit(self) -> None:
        """The call was delivered upstream: keep the charge."""
        ...

    async def release(self) -> None:
        """The call never reached the upstream: give the capacity back."""
        ...

    def commit_now(self) -> bool:
        """:meth:`commit` at once, when that needs no I/O; ``False`` (nothing done): await
        :meth:`commit` instead."""
        ...


def _no_reservations() -> list[Reservation]:
    # Not ``list[Reservation]`` as the factory: calling a generic alias costs ~0.2 µs more per call.
    return []


@dataclass(slots=True)
class Settlement:
    """What enforcement concluded for one call."""

    decision: Settled
    """``Allow``: forward now. ``Deny``: answer with this block."""

    approvals: tuple[ApprovalFacts, ...] = ()
    """Every approval hold the call went through, in order (a rule's, then a budget's)."""

    limits: LimitFacts | None = None
    """What the limits gate checked (``None`` when no limit or budget applied)."""

    reservations: list[Reservation] = field(default_factory=_no_reservations)
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


def commit_now(reservations: list[Reservation]) -> list[Reservation]:
    """Commit each reservation that can be committed at once (:meth:`Reservation.commit_now`);
    the ones left to await :meth:`Reservation.commit` for. One failing never stops the others."""
    left: list[Reservation] = []
    for reservation in reservations:
        try:
            if not reservation.commit_now():
                left.append(reservation)
        except Exception:  # the reply is decided already; a failed settlement is logged, not raised
            log.exception("settling a limit reservation failed (delivered=True)")
    return left


async def settle_reservations(reservations: list[Reservation], *, delivered: bool) -> None:
    """Commit (``delivered``) or release each reservation; one failing never stops the others."""
    for reservation in reservations:
        try:
            await (reservation.commit() if delivered else reservation.release())
        except Exception:  # the reply is decided already; a failed settlement is logged, not raised
            log.exception("settling a limit reservation failed (delivered=%s)", delivered)


@value
class CallOutcome:
    """What governance concluded about one ``tools/call``: one value for the audit record, the
    metrics and the shadow statistics alike."""

    tool: str
    decision: Decision
    """What ``decide()`` returned."""
    enforced: Decision
    """What the call met: the ``Allow`` it was forwarded under, the ``Deny`` that blocked it, or a ``DryRun``."""
    shadow: Decision | None = None
    """What ``policies.shadow`` would have decided (never enforced); ``None`` when no shadow rule matched."""
    config_sha256: str = ""
    """Hash of the config snapshot that governed the call."""
    approvals: tuple[ApprovalFacts, ...] = ()
    """The approval holds the call went through, in order."""
    limits: LimitFacts | None = None
    """What the limits gate checked."""
    told: Mapping[str, Any] | None = None
    """The block ``data`` the agent was answered with (its ``suggestion`` is recorded with the gate)."""
    block_reason: str | None = None
    """Overrides the block reason the decisions give (a held call whose client went away)."""

    @property
    def recorded(self) -> Decision:
        """The decision the audit record names: the block when the call was blocked, else the
        policy's decision (a forwarded ``require_approval`` call is recorded as such)."""
        return self.enforced if isinstance(self.enforced, Deny) else self.decision


class ApprovalGate(Protocol):
    """Holds calls for human approval (issue: approvals)."""

    async def hold(self, decision: RequireApproval, call: GovernedCall) -> Settlement:
        """Wait for the ticket's outcome: ``Allow`` when approved (or break-glass), else a ``Deny``
        with reason ``approval_denied`` / ``approval_timeout`` / ..., with the hold's
        :class:`ApprovalFacts` either way."""
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

    def charges_nothing(self, decision: Allow | RateLimit | SpendLimit) -> bool:
        """Whether :meth:`reserve` would settle ``decision`` as it is, taking nothing and reading no
        store (an ``Allow`` while no budget is in force): the enforcer then need not await it."""
        ...


class Enforcer(Protocol):
    """Decides what a call that passed the policy finally meets."""

    async def settle(self, decision: Decision, call: GovernedCall) -> Settlement:
        """Hold for approval and/or reserve limit capacity; ``Allow`` means forward now."""
        ...

    def peek(self, decision: Decision, call: GovernedCall) -> Settlement:
        """What :meth:`settle` would answer, consuming nothing and waiting for no one (dry-run)."""
        ...

    def settled(self, decision: Decision) -> Settlement | None:
        """What :meth:`settle` would answer, when no gate need be asked for it (``None``: await
        :meth:`settle`). Most calls are an ``Allow`` no limit or budget applies to."""
        ...
