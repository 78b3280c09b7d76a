"""Every limit the current config defines, keyed the way the ledger keys its buckets.

The operator API and the startup load use it to tell live buckets (their rule or budget is
configured, with the same fingerprint or epoch) from buckets of limits that changed or went.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from helio_proxy.config.budgets import BudgetConfig
from helio_proxy.config.root import HelioConfig
from helio_proxy.limits.budgets import compile_budget
from helio_proxy.limits.charges import Bucket, Charge, Kind, rate_fingerprint, spend_fingerprint
from helio_proxy.limits.windows import Window


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

    @property
    def triple(self) -> tuple[str, str, str]:
        return self.kind, self.owner, self.version

    def charge(self, bucket: Bucket) -> Charge:
        """A zero charge on ``bucket`` (what reads use to look a bucket up)."""
        return Charge(bucket, Decimal(0), self.limit, self.window, self.currency, budget=self.budget)


def rule_shapes(config: HelioConfig) -> list[LimitShape]:
    out: list[LimitShape] = []
    for index, rule in enumerate(config.policies.rules):
        name = rule.name or f"rule-{index}"
        limits = rule.limits
        if limits is None:
            continue
        if rule.action == "rate_limit" and limits.max_calls is not None and limits.window is not None:
            out.append(
                LimitShape(
                    "rate",
                    name,
                    rate_fingerprint(limits),
                    Decimal(limits.max_calls),
                    Window(limits.window.seconds),
                    limits.key,
                    rule_index=index,
                )
            )
        elif rule.action == "spend_limit" and limits.max_spend is not None:
            spend = limits.max_spend
            out.append(
                LimitShape(
                    "spend",
                    name,
                    spend_fingerprint(limits),
                    spend.limit,
                    Window(spend.window.seconds),
                    spend.key,
                    spend.currency,
                    rule_index=index,
                )
            )
    return out


def budget_shapes(config: HelioConfig, epochs: dict[str, int]) -> list[LimitShape]:
    """Configured budgets whose epoch the ledger has settled (see ``ledger.reconcile``)."""
    out: list[LimitShape] = []
    for budget in config.budgets:
        if budget.name not in epochs:
            continue
        window = compile_budget(budget).window
        out.append(
            LimitShape(
                "budget",
                budget.name,
                str(epochs[budget.name]),
                budget.limit,
                window,
                budget.key,
                budget.currency,
                budget=budget,
            )
        )
    return out
