"""Every limit the current config defines, keyed the way the ledger keys its buckets.

The operator API and the startup load use it to tell live buckets (their rule or budget is
configured, with the same fingerprint or epoch) from buckets of limits that changed or went.
"""

from __future__ import annotations

from helio_proxy.config.root import HelioConfig
from helio_proxy.limits.budgets import compile_budget
from helio_proxy.limits.charges import LimitShape, rule_shape


def rule_shapes(config: HelioConfig) -> list[LimitShape]:
    """Every rule's rate or spend limit, in rule order."""
    out: list[LimitShape] = []
    for index, rule in enumerate(config.policies.rules):
        shape = rule_shape(index, rule.name or f"rule-{index}", rule.action, rule.limits)
        if shape is not None:
            out.append(shape)
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
