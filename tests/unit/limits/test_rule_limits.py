"""A rule's rate or spend limit is worked out once per config snapshot, not once per call."""

from __future__ import annotations

from typing import Any

import pytest

from helio_proxy.limits import gate as gate_module
from helio_proxy.limits.charges import RuleLimit, rate_fingerprint, rule_limit, spend_fingerprint
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
def worked_out(monkeypatch: pytest.MonkeyPatch) -> list[RuleLimit]:
    made: list[RuleLimit] = []

    def counting(*args: Any) -> RuleLimit:
        made.append(rule_limit(*args))
        return made[-1]

    monkeypatch.setattr(gate_module, "rule_limit", counting)
    return made


async def test_each_rule_limit_is_worked_out_once_per_config_snapshot(
    rig: RigFactory, worked_out: list[RuleLimit]
) -> None:
    r = await rig(RATE)
    for _ in range(3):
        assert (await r.run("search")).limits is not None
    for _ in range(2):
        assert (await r.run("pay", {"amount": 10})).limits is not None
    assert [(m.kind, m.owner) for m in worked_out] == [("rate", "calls"), ("spend", "pay")]
    # The fourth search is over the limit: the cached limit still counts.
    assert (await r.run("search")).decision.reason == "rate_limited"

    r.load(RATE)  # a reload: a new snapshot, worked out again, same buckets
    worked_out.clear()
    assert (await r.run("search")).decision.reason == "rate_limited"
    assert [(m.kind, m.owner) for m in worked_out] == [("rate", "calls")]


async def test_a_worked_out_limit_charges_what_the_rule_says(rig: RigFactory) -> None:
    r = await rig(RATE)
    rate = r.decide(r.call("search"))
    spend = r.decide(r.call("pay", {"amount": 10}))
    assert isinstance(rate, RateLimit)
    assert isinstance(spend, SpendLimit)
    calls = rule_limit("rate", "calls", rate.limits)
    assert (calls.fingerprint, str(calls.limit), calls.window.seconds, calls.key, calls.path) == (
        rate_fingerprint(rate.limits),
        "3",
        60,
        "tool",
        None,
    )
    pay = rule_limit("spend", "pay", spend.limits)
    assert (pay.fingerprint, str(pay.limit), pay.window.seconds, pay.currency) == (
        spend_fingerprint(spend.limits),
        "100",
        3600,
        "GBP",
    )
    assert pay.path is not None
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
