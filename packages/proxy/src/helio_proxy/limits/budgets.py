"""Budgets compiled once per config snapshot: which calls feed each pot, and its epoch fingerprint.

A budget's *fingerprint* covers what its spend means: ``limit``, ``currency``, ``window`` and
``key``. When a reload changes any of them the budget starts a new *epoch* (an empty pot, see
:mod:`helio_proxy.limits.ledger`); editing ``contributors``, ``on_exceed`` or ``approval`` keeps
the spend accrued so far.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal

from helio_proxy.config.budgets import BudgetConfig
from helio_proxy.config.policies import Match
from helio_proxy.config.root import HelioConfig
from helio_proxy.limits.amounts import ExactArguments, InvalidAmount, read_amount
from helio_proxy.limits.windows import Window
from helio_proxy.matching.jsonpath import JsonPath, parse_path
from helio_proxy.policy.facts import UNKNOWN_HINTS, CallFacts
from helio_proxy.policy.matchers import Predicate, compile_match


def budget_fingerprint(budget: BudgetConfig) -> str:
    """What identifies a budget's epoch: a change here empties the pot."""
    shape = {
        # normalize(): 5000 and 5000.00 are the same limit.
        "limit": format(budget.limit.normalize(), "f"),
        "currency": budget.currency,
        "window": budget.window,
        "key": budget.key,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Contribution:
    """One compiled contributor: which calls it matches and where their amount is."""

    predicate: Predicate
    field: JsonPath


@dataclass(frozen=True, slots=True)
class CompiledBudget:
    config: BudgetConfig
    fingerprint: str
    window: Window
    contributions: tuple[Contribution, ...]

    @property
    def name(self) -> str:
        return self.config.name

    def amount_for(self, facts: CallFacts, arguments: ExactArguments) -> Decimal | InvalidAmount | None:
        """The first matching contributor's amount; ``None`` when the call does not feed this budget."""
        for contribution in self.contributions:
            if contribution.predicate(facts, UNKNOWN_HINTS):
                return read_amount(contribution.field, arguments)
        return None


def compile_budget(budget: BudgetConfig) -> CompiledBudget:
    contributions = tuple(
        Contribution(
            # Feeding a budget restricts the call, so an undecidable comparison feeds it (and the
            # amount read then blocks a value that is not a number).
            compile_match(
                Match(tool=c.match.tool, input=c.match.input, upstreams=c.match.upstreams),
                environment=None,
                undecided_matches=True,
            ),
            parse_path(c.field),
        )
        for c in budget.contributors
    )
    window = Window.parse(budget.window, idle_ttl=budget.idle_ttl)
    return CompiledBudget(budget, budget_fingerprint(budget), window, contributions)


def compile_budgets(config: HelioConfig) -> tuple[CompiledBudget, ...]:
    return tuple(compile_budget(budget) for budget in config.budgets)
