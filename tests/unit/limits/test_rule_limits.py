"""A rule's rate or spend limit is worked out once per config snapshot, not once per call."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from helio_proxy.config.root import HelioConfig
from helio_proxy.limits import gate as gate_module
from helio_proxy.limits.catalog import rule_shapes
from helio_proxy.limits.charges import LimitShape, rate_fingerprint, rule_shape, spend_fingerprint
from helio_proxy.policy import RateLimit, SpendLimit
from tests.unit.limits.conftest import RigFactory

RATE = """
policies:
  rules:
    - {name: calls, match: {tool: search}, action: rate_limit, limits: {max_calls: 3, window: 1m, key: tool}}
    - {name: pay, match: {tool: pay}, action: spend_limit,
       limits: {max_spend: {field: '$.amount', limit: 100, currency: GBP, window: 1h}}}
"""


@pytest.fixture
def worked_out(monkeypatch: pytest.MonkeyPatch) -> list[HelioConfig]:
    """The configs whose rule limits the gate worked out."""
    made: list[HelioConfig] = []

    def counting(config: HelioConfig) -> list[LimitShape]:
        made.append(config)
        return rule_shapes(config)

    monkeypatch.setattr(gate_module, "rule_shapes", counting)
    return made


async def test_each_rule_limit_is_worked_out_once_per_config_snapshot(
    rig: RigFactory, worked_out: list[HelioConfig]
) -> None:
    r = await rig(RATE)
    for _ in range(3):
        assert (await r.run("search")).limits is not None
    for _ in range(2):
        assert (await r.run("pay", {"amount": 10})).limits is not None
    assert worked_out == [r.config]
    # The fourth search is over the limit: the worked-out limit still counts.
    assert (await r.run("search")).decision.reason == "rate_limited"

    r.load(RATE)  # a reload: a new snapshot, worked out again, same buckets
    assert (await r.run("search")).decision.reason == "rate_limited"
    assert worked_out[1:] == [r.config]


async def test_a_worked_out_limit_charges_what_the_rule_says(rig: RigFactory) -> None:
    r = await rig(RATE)
    rate = r.decide(r.call("search"))
    spend = r.decide(r.call("pay", {"amount": 10}))
    assert isinstance(rate, RateLimit)
    assert isinstance(spend, SpendLimit)
    calls = rule_shape(0, "calls", "rate_limit", rate.limits)
    assert calls is not None
    assert (calls.version, str(calls.limit), calls.window.seconds, calls.key, calls.limits) == (
        rate_fingerprint(rate.limits),
        "3",
        60,
        "tool",
        rate.limits,
    )
    pay = rule_shape(1, "pay", "spend_limit", spend.limits)
    assert pay is not None
    assert (pay.version, str(pay.limit), pay.window.seconds, pay.currency) == (
        spend_fingerprint(spend.limits),
        "100",
        3600,
        "GBP",
    )
    settled = await r.run("pay", {"amount": 10})
    assert settled.limits is not None
    [charge] = settled.limits.charges
    assert (charge.kind, charge.name, charge.amount, charge.limit, charge.window) == (
        "spend",
        "pay",
        "10",
        "100",
        "3600s",
    )


async def test_a_decision_whose_limits_are_not_the_snapshots_is_charged_by_its_own(rig: RigFactory) -> None:
    r = await rig(RATE)
    call = r.call("search")
    decision = r.decide(call)
    assert isinstance(decision, RateLimit)
    tighter = dataclasses.replace(decision, limits=decision.limits.model_copy(update={"max_calls": 1}))
    first = await r.gate.reserve(tighter, call)
    await first.delivered()
    assert first.limits is not None
    [charge] = first.limits.charges
    assert charge.limit == "1"  # its own limit, not the snapshot rule's 3
    assert (await r.gate.reserve(tighter, r.call("search"))).decision.reason == "rate_limited"


@pytest.mark.parametrize("action", ["allow", "deny", "require_approval", None])
def test_a_rule_with_no_rate_or_spend_limit_has_no_shape(action: Any) -> None:
    assert rule_shape(0, "r", action, None) is None
