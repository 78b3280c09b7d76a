"""What one call would charge: its rule's rate or spend limit and every budget it feeds.

:func:`plan` turns a decision and a call into :class:`Charge` values, one per bucket, or into a
block that needs no counter at all (an invalid amount, a session-keyed limit without a session).
Nothing here touches the store.

**Keys.** ``tool`` counts per tool name (a ``search_*`` rule keeps one bucket per matching tool),
``session`` per session id, ``global`` (budgets) in one pot. ``agent`` counts per authenticated
agent (``listen.auth``); without agent authentication it falls back to the *session*. On the
MCP port ``sender_id`` (an adapter's sender) falls back to ``tool`` for rules and ``global`` for
budgets. A session-keyed bucket without a session id blocks the call (``session_unresolved``)
under ``session.on_unresolved: deny``, and pools such calls as ``unknown`` under ``anonymous``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Final, Literal

from helio_proxy.config.budgets import BudgetConfig
from helio_proxy.config.policies import Limits
from helio_proxy.config.root import HelioConfig
from helio_proxy.governance import GovernedCall
from helio_proxy.limits.amounts import ExactArguments, InvalidAmount, read_amount
from helio_proxy.limits.budgets import CompiledBudget
from helio_proxy.limits.windows import Window
from helio_proxy.matching.jsonpath import parse_path
from helio_proxy.values import value

Kind = Literal["rate", "spend", "budget"]
Scope = Literal["tool", "session", "agent", "global"]

RATE_SLOT: Final = Decimal(1)

_spend_path = functools.lru_cache(maxsize=256)(parse_path)
"""A spend limit's ``field`` path, parsed once per distinct path (it is read on every call)."""


@value
class Bucket:
    """Where a charge is counted."""

    kind: Kind
    owner: str
    """The rule's name (``rule-<index>`` when unnamed) or the budget's name."""
    version: str
    """The limit's fingerprint (rate/spend), or the budget's epoch (filled in by the ledger)."""
    scope: Scope
    subject: str | None
    """The tool name, session id or agent id the bucket counts for (``None`` for ``global``)."""

    key: str = field(init=False, repr=False, compare=False)
    """The bucket's id in ``limit_buckets`` and ``limit_events``."""
    ledger_key: str = field(init=False, repr=False, compare=False)
    """The part that names whose pot it is (``budget_events.bucket_key``): ``global``, ``session:<id>``."""

    def __post_init__(self) -> None:
        # Made once: a reservation reads its bucket's key about ten times.
        ledger_key = self.scope if self.subject is None else f"{self.scope}:{self.subject}"
        object.__setattr__(self, "ledger_key", ledger_key)
        object.__setattr__(self, "key", f"{self.kind}:{self.owner}:{self.version}:{ledger_key}")


@value
class Charge:
    """One bucket's share of a call."""

    bucket: Bucket
    amount: Decimal
    limit: Decimal
    window: Window
    currency: str | None = None
    budget: BudgetConfig | None = None
    """Set for a budget charge."""
    fingerprint: str = ""
    """A budget's epoch fingerprint (see :func:`~helio_proxy.limits.budgets.budget_fingerprint`)."""

    @property
    def waivable(self) -> bool:
        """An operator may approve this charge over the limit (``on_exceed: require_approval``)."""
        return self.budget is not None and self.budget.on_exceed == "require_approval"

    def with_epoch(self, epoch: int) -> Charge:
        return replace(self, bucket=replace(self.bucket, version=str(epoch)))


@dataclass(frozen=True, slots=True)
class InvalidCharge:
    """An amount that cannot be charged: the call is blocked whatever the bucket holds."""

    kind: Kind
    owner: str
    invalid: InvalidAmount
    limits: Limits | None = None
    budget: CompiledBudget | None = None


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A session-keyed bucket, and no session id to key it by (``on_unresolved: deny``)."""

    kind: Kind
    owner: str


@value
class Plan:
    charges: tuple[Charge, ...]
    invalid: tuple[InvalidCharge, ...] = ()
    unresolved: Unresolved | None = None

    @property
    def empty(self) -> bool:
        return not self.charges and not self.invalid and self.unresolved is None


def fingerprint(*parts: object) -> str:
    """A short stable hash of what a rule limit's counting means (a change starts fresh buckets)."""
    return _fingerprint(tuple(str(p) for p in parts))


@functools.lru_cache(maxsize=1024)
def _fingerprint(parts: tuple[str, ...]) -> str:
    # Every limited call asks for its rule's fingerprint; hashing once per distinct limit keeps
    # the JSON encoding and SHA-256 off the hot path. Keyed by the text of the parts, as hashed.
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()[:12]


def rate_fingerprint(limits: Limits) -> str:
    assert limits.max_calls is not None
    assert limits.window is not None
    return fingerprint("rate", limits.max_calls, limits.window.seconds, limits.key)


def spend_fingerprint(limits: Limits) -> str:
    spend = limits.max_spend
    assert spend is not None
    return fingerprint(
        "spend", format(spend.limit.normalize(), "f"), spend.currency, spend.window.seconds, spend.key
    )


def _subject(
    key: str, call: GovernedCall, config: HelioConfig, *, budget: bool
) -> tuple[Scope, str | None] | None:
    """``(scope, subject)`` for a limit key; ``None`` when it needs a session and has none."""
    if key == "tool":
        return "tool", call.facts.tool
    if key == "global" or (key == "sender_id" and budget):
        return "global", None
    if key == "sender_id":
        return "tool", call.facts.tool
    if key == "agent" and call.agent_id is not None:
        return "agent", call.agent_id
    session = call.identity.limit_bucket(config.session.on_unresolved)
    return None if session is None else ("session", session)


@dataclass(frozen=True, slots=True)
class LimitShape:
    """One configured limit: a rule's rate or spend limit, or a budget (at its current epoch)."""

    kind: Kind
    owner: str
    version: str
    limit: Decimal
    window: Window
    key: str
    currency: str | None = None
    rule_index: int | None = None
    budget: BudgetConfig | None = None
    limits: Limits | None = None
    """A rule's own ``limits`` (``None`` for a budget): where a spend limit reads its amount."""

    @property
    def triple(self) -> tuple[str, str, str]:
        return self.kind, self.owner, self.version

    def charge(self, bucket: Bucket) -> Charge:
        """A zero charge on ``bucket`` (what reads use to look a bucket up)."""
        return Charge(bucket, Decimal(0), self.limit, self.window, self.currency, budget=self.budget)


def rule_shape(index: int, owner: str, action: str | None, limits: Limits | None) -> LimitShape | None:
    """Rule ``index``'s rate or spend limit (``owner``: the rule's name, ``rule-<index>`` when
    unnamed); ``None`` for a rule with none."""
    if limits is None:
        return None
    if action == "rate_limit" and limits.max_calls is not None and limits.window is not None:
        return LimitShape(
            "rate",
            owner,
            rate_fingerprint(limits),
            Decimal(limits.max_calls),
            Window(limits.window.seconds),
            limits.key,
            rule_index=index,
            limits=limits,
        )
    if action == "spend_limit" and limits.max_spend is not None:
        spend = limits.max_spend
        return LimitShape(
            "spend",
            owner,
            spend_fingerprint(limits),
            spend.limit,
            Window(spend.window.seconds),
            spend.key,
            spend.currency,
            rule_index=index,
            limits=limits,
        )
    return None


def plan(
    rule: LimitShape | None,
    call: GovernedCall,
    config: HelioConfig,
    budgets: tuple[CompiledBudget, ...],
) -> Plan:
    """Every charge ``call`` makes: its rule's limit (:func:`rule_shape`) and its budgets."""
    charges: list[Charge] = []
    invalid: list[InvalidCharge] = []
    arguments: ExactArguments | None = None
    if rule is not None:
        subject = _subject(rule.key, call, config, budget=False)
        if subject is None:
            return Plan((), (), Unresolved(rule.kind, rule.owner))
        bucket = Bucket(rule.kind, rule.owner, rule.version, *subject)
        if rule.kind == "rate":
            charges.append(Charge(bucket, RATE_SLOT, rule.limit, rule.window))
        else:
            assert rule.limits is not None
            assert rule.limits.max_spend is not None
            arguments = ExactArguments(call.facts.arguments, call.raw)
            amount = read_amount(_spend_path(rule.limits.max_spend.field), arguments)
            if isinstance(amount, InvalidAmount):
                invalid.append(InvalidCharge("spend", rule.owner, amount, limits=rule.limits))
            else:
                charges.append(Charge(bucket, amount, rule.limit, rule.window, rule.currency))
    for budget in budgets:
        if arguments is None:  # read once, and only by a call that feeds an amount
            arguments = ExactArguments(call.facts.arguments, call.raw)
        amount = budget.amount_for(call.facts, arguments)
        if amount is None:
            continue
        if isinstance(amount, InvalidAmount):
            invalid.append(InvalidCharge("budget", budget.name, amount, budget=budget))
            continue
        subject = _subject(budget.config.key, call, config, budget=True)
        if subject is None:
            return Plan((), (), Unresolved("budget", budget.name))
        bucket = Bucket("budget", budget.name, "", *subject)
        charges.append(
            Charge(
                bucket,
                amount,
                budget.config.limit,
                budget.window,
                budget.config.currency,
                budget=budget.config,
                fingerprint=budget.fingerprint,
            )
        )
    return Plan(tuple(charges), tuple(invalid))


def fallback_warnings(config: HelioConfig) -> list[str]:
    """Startup notices for limit keys that count by something else on this proxy."""
    out: list[str] = []
    for index, rule in enumerate(config.policies.rules):
        label = f"policies.rules[{index}]" + (f" ({rule.name!r})" if rule.name else "")
        keys: list[tuple[str, str]] = []
        if rule.limits is not None and rule.action == "rate_limit":
            keys.append(("limits.key", rule.limits.key))
        if rule.limits is not None and rule.limits.max_spend is not None and rule.action == "spend_limit":
            keys.append(("limits.max_spend.key", rule.limits.max_spend.key))
        for where, key in keys:
            if key == "agent" and config.listen.auth is None:
                out.append(
                    f"{label} {where} 'agent': agents are not authenticated on the MCP port, so it counts per "
                    "session (x-helio-session-id) instead"
                )
            elif key == "sender_id":
                out.append(f"{label} {where} 'sender_id' only applies to adapters; MCP calls count per tool")
    for budget in config.budgets:
        if budget.key == "agent" and config.listen.auth is None:
            out.append(
                f"budget {budget.name!r} key 'agent': agents are not authenticated on the MCP port, so it counts "
                "per session (x-helio-session-id) instead"
            )
        elif budget.key == "sender_id":
            out.append(
                f"budget {budget.name!r} key 'sender_id' only applies to adapters; MCP calls share one pot"
            )
    return out
