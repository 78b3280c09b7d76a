"""Spend limits: Decimal sums, invalid amounts, windows, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import text

from helio_proxy.audit.clock import ManualClock
from helio_proxy.policy import Allow, Deny
from tests.unit.limits.conftest import RigFactory

SPEND = """
policies:
  rules:
    - name: payments
      match: {tool: create_payment}
      action: spend_limit
      limits:
        max_spend: {field: '$.amount', limit: 0.3, currency: GBP, window: 1h}
"""


def raw(arguments: str) -> bytes:
    return (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_payment","arguments":'
        + arguments
        + "}}"
    ).encode()


async def test_amounts_add_up_as_decimals_and_the_limit_is_inclusive(rig: RigFactory) -> None:
    r = await rig(SPEND)
    assert isinstance((await r.run("create_payment", {"amount": 0.1})).decision, Allow)
    assert isinstance((await r.run("create_payment", {"amount": 0.2})).decision, Allow)  # 0.3 exactly
    blocked = (await r.run("create_payment", {"amount": 0.01})).decision
    assert isinstance(blocked, Deny)
    assert blocked.reason == "spend_limited"
    assert dict(blocked.details or {}) == {
        "current_spend": "0.3",
        "max_spend": "0.3",
        "attempted_amount": "0.01",
        "currency": "GBP",
        "window_seconds": 3600,
        "reset_at": "2026-03-01T13:00:00.000Z",
    }
    assert blocked.retry_allowed is True
    assert isinstance((await r.run("create_payment", {"amount": 0})).decision, Allow)


async def test_an_amount_over_the_whole_limit_can_never_pass(rig: RigFactory) -> None:
    r = await rig(SPEND)
    blocked = (await r.run("create_payment", {"amount": 0.31})).decision
    assert isinstance(blocked, Deny)
    assert (blocked.reason, blocked.retry_allowed) == ("spend_limited", False)


async def test_the_spend_window_slides(rig: RigFactory, clock: ManualClock) -> None:
    r = await rig(SPEND)
    await r.run("create_payment", {"amount": 0.2})
    clock.advance(1800)
    await r.run("create_payment", {"amount": 0.1})
    assert isinstance((await r.run("create_payment", {"amount": 0.1})).decision, Deny)
    clock.advance(1800)  # the 0.2 has aged out; the 0.1 is still in
    assert isinstance((await r.run("create_payment", {"amount": 0.2})).decision, Allow)
    assert isinstance((await r.run("create_payment", {"amount": 0.01})).decision, Deny)


async def test_invalid_amounts_are_blocked_and_charge_nothing(rig: RigFactory) -> None:
    r = await rig(SPEND)
    cases = {
        "{}": "missing",
        '{"amount": -1}': "negative",
        '{"amount": "0.1"}': "not_a_number",
        '{"amount": true}': "not_a_number",
        '{"amount": NaN}': "not_finite",
        '{"amount": Infinity}': "not_finite",
    }
    for arguments, code in cases.items():
        call = r.call("create_payment", json.loads(arguments), raw=raw(arguments))
        blocked = (await r.reserve(call)).decision
        assert isinstance(blocked, Deny), arguments
        assert blocked.reason == "spend_limited"
        details = dict(blocked.details or {})
        assert details["invalid_amount"] == code, arguments
        assert (details["field"], details["max_spend"], details["currency"]) == ("$.amount", "0.3", "GBP")
        assert details["reset_at"] == "2026-03-01T12:00:00.000Z"  # now: nothing to wait for
    rows = r.store.read_sync(lambda c: c.execute(text("SELECT count(*) FROM limit_events")).scalar())
    assert rows == 0
    assert isinstance((await r.run("create_payment", {"amount": 0.3})).decision, Allow)


async def test_a_spend_key_session_keeps_a_pot_per_session(rig: RigFactory) -> None:
    r = await rig(SPEND.replace("window: 1h}", "window: 1h, key: session}"))
    await r.run("create_payment", {"amount": 0.3}, session="a")
    assert isinstance((await r.run("create_payment", {"amount": 0.1}, session="a")).decision, Deny)
    assert isinstance((await r.run("create_payment", {"amount": 0.3}, session="b")).decision, Allow)
