"""Budgets: cross-tool pots charged all or nothing, epochs, session pots, approvals, the ledger."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from helio_proxy.audit.clock import ManualClock
from helio_proxy.gateway.enforcement import GovernedCall, Settlement
from helio_proxy.governance import ApprovalFacts
from helio_proxy.policy import Allow, Decision, Deny, RequireApproval
from tests.unit.limits.conftest import RigFactory

BUDGETS = """
budgets:
  - name: travel
    limit: 1000
    currency: GBP
    window: 24h
    contributors:
      - {match: {tool: book_flight}, field: '$.fare'}
      - {match: {tool: book_hotel}, field: '$.total'}
  - name: all-spend
    limit: 1500
    currency: GBP
    window: 24h
    contributors:
      - {match: {tool: 'book_*'}, field: '$.amount'}
      - {match: {tool: pay}, field: '$.amount'}
"""


def ledger(r: Any) -> list[tuple[str, int, str, str, str | None]]:
    return r.store.read_sync(
        lambda c: [
            tuple(row)
            for row in c.execute(
                text(
                    "SELECT budget_name, epoch, bucket_key, amount, tool_name FROM budget_events "
                    "ORDER BY occurred_at, budget_name"
                )
            )
        ]
    )


async def test_an_allow_charges_nothing_only_while_no_budget_is_in_force(rig: RigFactory) -> None:
    """What lets the enforcer settle most calls without awaiting the gate (and a reload that adds
    a budget takes that away at once)."""
    r = await rig("")
    call = r.call("pay", {"amount": 50})
    allow = r.decide(call)
    assert isinstance(allow, Allow)
    assert r.gate.charges_nothing(allow) is True
    r.load(BUDGETS)
    assert r.gate.charges_nothing(allow) is False
    settled = await r.run("pay", {"amount": 50})
    assert isinstance(settled.decision, Allow)
    assert ledger(r) == [("all-spend", 1, "global", "50", "pay")]


async def test_one_call_charges_every_matching_budget_from_its_first_matching_contributor(
    rig: RigFactory, clock: ManualClock
) -> None:
    r = await rig(BUDGETS)
    settled = await r.run("book_flight", {"fare": 400, "amount": 450})
    assert isinstance(settled.decision, Allow)
    clock.advance(1)
    await r.run("pay", {"amount": 50})
    assert ledger(r) == [
        ("all-spend", 1, "global", "450", "book_flight"),
        ("travel", 1, "global", "400", "book_flight"),
        ("all-spend", 1, "global", "50", "pay"),
    ]
    assert [e["name"] for e in r.published("budget_update")] == ["travel", "all-spend", "all-spend"]


async def test_a_call_over_one_budget_charges_none_of_them(rig: RigFactory) -> None:
    r = await rig(BUDGETS)
    await r.run("pay", {"amount": 1400})
    blocked = (await r.run("book_flight", {"fare": 300, "amount": 300})).decision
    assert isinstance(blocked, Deny)
    assert (blocked.reason, blocked.blocked_action, blocked.retry_allowed) == (
        "budget_exceeded",
        "deny",
        True,
    )
    assert (blocked.details or {})["budgets"] == [
        {
            "name": "all-spend",
            "limit": "1500",
            "spent": "1400",
            "remaining": "100",
            "attempted_amount": "300",
            "currency": "GBP",
            "window": "24h",
            "on_exceed": "deny",
            "reset_at": "2026-03-02T12:00:00.000Z",
            "epoch": 1,
        }
    ]
    assert [row[0] for row in ledger(r)] == ["all-spend"]  # travel was not charged either
    breached = r.published("budget_breached")
    assert [(b["name"], b["tool"]) for b in breached] == [("all-spend", "book_flight")]


async def test_an_invalid_amount_fails_closed_whatever_on_exceed_says(rig: RigFactory) -> None:
    r = await rig(
        BUDGETS.replace(
            "window: 24h\n    contributors:\n      - {match: {tool: book_flight}",
            "window: 24h\n    on_exceed: require_approval\n    contributors:\n      - {match: {tool: book_flight}",
        )
    )
    blocked = (await r.run("book_flight", {"fare": "400", "amount": 1})).decision
    assert isinstance(blocked, Deny)
    assert blocked.reason == "budget_exceeded"
    assert blocked.retry_allowed is False
    assert (blocked.details or {})["budgets"][0] == {
        "name": "travel",
        "reason": "invalid_amount",
        "invalid_amount": "not_a_number",
        "limit": "1000",
        "currency": "GBP",
        "window": "24h",
        "on_exceed": "require_approval",
    }
    assert ledger(r) == []


async def test_a_string_amount_cannot_dodge_a_contributors_numeric_condition(rig: RigFactory) -> None:
    r = await rig(
        """
budgets:
  - name: large-payments
    limit: 1000
    currency: GBP
    window: 24h
    contributors:
      - {match: {tool: pay, input: {'$.amount': {gte: 100}}}, field: '$.amount'}
"""
    )
    for amount in ("150", "lots"):
        blocked = (await r.run("pay", {"amount": amount})).decision
        assert isinstance(blocked, Deny)
        assert blocked.reason == "budget_exceeded"
        assert (blocked.details or {})["budgets"][0]["invalid_amount"] == "not_a_number"
    assert isinstance((await r.run("pay", {"amount": 99})).decision, Allow)
    assert ledger(r) == []


async def test_changing_limit_currency_window_or_key_starts_a_new_epoch(rig: RigFactory) -> None:
    r = await rig(BUDGETS)
    await r.run("pay", {"amount": 1500})
    assert isinstance((await r.run("pay", {"amount": 1})).decision, Deny)
    r.load(BUDGETS.replace("limit: 1500", "limit: 2000"))
    assert isinstance((await r.run("pay", {"amount": 2000})).decision, Allow)  # a fresh pot
    assert r.gate.epochs["all-spend"] == 2
    r.load(
        BUDGETS.replace("limit: 1500", "limit: 2000").replace(
            "currency: GBP\n    window: 24h\n    contributors:\n      - {match: {tool: 'book_*'}",
            "currency: EUR\n    window: 24h\n    contributors:\n      - {match: {tool: 'book_*'}",
        )
    )
    assert isinstance((await r.run("pay", {"amount": 2000})).decision, Allow)
    assert r.gate.epochs["all-spend"] == 3
    epochs = [row[1] for row in ledger(r) if row[0] == "all-spend"]
    assert epochs == [1, 2, 3]


async def test_editing_contributors_keeps_the_spend(rig: RigFactory) -> None:
    r = await rig(BUDGETS)
    await r.run("pay", {"amount": 1400})
    r.load(
        BUDGETS.replace(
            "- {match: {tool: pay}, field: '$.amount'}",
            "- {match: {tool: pay}, field: '$.total'}\n      - {match: {tool: refund_fee}, field: '$.fee'}",
        )
    )
    blocked = (await r.run("pay", {"total": 200})).decision
    assert isinstance(blocked, Deny)
    assert (blocked.details or {})["budgets"][0]["spent"] == "1400"
    assert r.gate.epochs["all-spend"] == 1


async def test_a_removed_budget_is_retired_and_comes_back_empty(rig: RigFactory) -> None:
    r = await rig(BUDGETS)
    await r.run("pay", {"amount": 1500})
    travel_only = BUDGETS[: BUDGETS.index("  - name: all-spend")]
    r.load(travel_only)
    await r.gate.reconciled(r.config)
    retired = r.store.read_sync(
        lambda c: c.execute(
            text("SELECT retired_at IS NOT NULL FROM budget_meta WHERE name = 'all-spend'")
        ).scalar()
    )
    assert retired
    r.load(BUDGETS)
    assert isinstance((await r.run("pay", {"amount": 1500})).decision, Allow)
    assert r.gate.epochs["all-spend"] == 2


async def test_a_session_pot_lasts_until_the_session_is_idle_for_idle_ttl(
    rig: RigFactory, clock: ManualClock
) -> None:
    session_budget = """
budgets:
  - name: per-run
    limit: 100
    window: session
    key: session
    idle_ttl: 1h
    contributors: [{match: {tool: pay}, field: '$.amount'}]
"""
    r = await rig(session_budget)
    await r.run("pay", {"amount": 60}, session="a")
    clock.advance(3000)  # 50 min: still the same pot, however long the session runs
    await r.run("pay", {"amount": 40}, session="a")
    clock.advance(3000)
    blocked = (await r.run("pay", {"amount": 1}, session="a")).decision
    assert isinstance(blocked, Deny)
    entry = (blocked.details or {})["budgets"][0]
    assert (entry["window"], entry["reset_at"], blocked.retry_allowed) == ("session", None, False)
    assert isinstance((await r.run("pay", {"amount": 100}, session="b")).decision, Allow)
    clock.advance(3600)  # "a" idle for an hour: its pot starts over
    assert isinstance((await r.run("pay", {"amount": 100}, session="a")).decision, Allow)


class FakeApprovals:
    """An approval gate that answers at once and remembers what it was asked."""

    def __init__(self, approve: bool) -> None:
        self.approve = approve
        self.asked: list[list[dict[str, Any]]] = []

    async def hold(self, decision: RequireApproval, call: GovernedCall) -> Settlement:
        raise AssertionError("not a budget ticket")

    async def hold_budget(
        self, decision: Decision, call: GovernedCall, breached: list[dict[str, Any]]
    ) -> Settlement:
        self.asked.append(breached)
        if self.approve:
            return Settlement(
                Allow(reason="rule_matched"), approvals=(ApprovalFacts("approved", 1.0, approved_by="ops"),)
            )
        return Settlement(
            Deny(reason="approval_denied", blocked_action="require_approval"),
            approvals=(ApprovalFacts("denied", 1.0),),
        )


APPROVAL = """
budgets:
  - name: ops
    limit: 100
    on_exceed: require_approval
    contributors: [{match: {tool: pay}, field: '$.amount'}]
"""


async def test_a_require_approval_budget_without_approvals_blocks_with_approval_unavailable(
    rig: RigFactory,
) -> None:
    r = await rig(APPROVAL)
    await r.run("pay", {"amount": 100})
    blocked = (await r.run("pay", {"amount": 1})).decision
    assert isinstance(blocked, Deny)
    assert (blocked.reason, blocked.blocked_action) == ("approval_unavailable", "require_approval")
    assert (blocked.details or {})["budgets"][0]["name"] == "ops"


async def test_an_approved_call_over_a_budget_is_charged_anyway(rig: RigFactory) -> None:
    r = await rig(APPROVAL)
    approvals = FakeApprovals(approve=True)
    r.approvals = approvals
    await r.run("pay", {"amount": 100})
    settled = await r.run("pay", {"amount": 30})
    assert isinstance(settled.decision, Allow)
    assert approvals.asked[0][0]["name"] == "ops"
    assert (approvals.asked[0][0]["current"], approvals.asked[0][0]["amount"]) == ("100", "30")
    assert [a.status for a in settled.approvals] == ["approved"]
    assert settled.limits is not None
    assert settled.limits.charged is True
    assert [row[3] for row in ledger(r)] == ["100", "30"]
    assert r.published("budget_breached")[0]["on_exceed"] == "require_approval"


async def test_a_denied_budget_ticket_blocks_and_charges_nothing(rig: RigFactory) -> None:
    r = await rig(APPROVAL)
    r.approvals = FakeApprovals(approve=False)
    await r.run("pay", {"amount": 100})
    settled = await r.run("pay", {"amount": 30})
    assert isinstance(settled.decision, Deny)
    assert settled.decision.reason == "approval_denied"
    assert [a.status for a in settled.approvals] == ["denied"]
    assert settled.limits is not None
    assert [row[3] for row in ledger(r)] == ["100"]


async def test_deny_beats_require_approval(rig: RigFactory) -> None:
    both = (
        APPROVAL
        + "  - name: hard\n    limit: 100\n    contributors: [{match: {tool: pay}, field: '$.amount'}]\n"
    )
    r = await rig(both)
    approvals = FakeApprovals(approve=True)
    r.approvals = approvals
    await r.run("pay", {"amount": 100})
    blocked = (await r.run("pay", {"amount": 1})).decision
    assert isinstance(blocked, Deny)
    assert blocked.reason == "budget_exceeded"
    assert {b["name"] for b in (blocked.details or {})["budgets"]} == {"ops", "hard"}
    assert approvals.asked == []


async def test_a_released_budget_charge_leaves_no_ledger_row(rig: RigFactory) -> None:
    r = await rig(BUDGETS)
    settled = await r.reserve(r.call("pay", {"amount": 10}), deliver=False)
    assert len(ledger(r)) == 1  # reserved: already counted
    await settled.undelivered()
    assert ledger(r) == []
    assert r.published("budget_update") == []
