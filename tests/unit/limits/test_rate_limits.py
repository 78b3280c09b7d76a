"""Rate limits: sliding windows, keys, pending reservations and refunds, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from helio_proxy.audit.clock import ManualClock
from helio_proxy.audit.recorder import limits_metadata
from helio_proxy.limits.ledger import _PRUNE_EVENTS  # pyright: ignore[reportPrivateUsage]
from helio_proxy.policy import Allow, Deny
from helio_proxy.store.testing import temporary_store
from tests.unit.limits.conftest import START, RigFactory

RATE = """
policies:
  rules:
    - name: search
      match: {tool: 'search_*'}
      action: rate_limit
      limits: {max_calls: 3, window: 1m, key: KEY}
session:
  on_unresolved: UNRESOLVED
"""


def rate(key: str = "tool", unresolved: str = "deny") -> str:
    return RATE.replace("KEY", key).replace("UNRESOLVED", unresolved)


async def test_the_window_slides_and_frees_the_oldest_slot_first(rig: RigFactory, clock: ManualClock) -> None:
    r = await rig(rate())
    for _ in range(2):
        assert isinstance((await r.run("search_docs")).decision, Allow)
    clock.advance(30)
    assert isinstance((await r.run("search_docs")).decision, Allow)
    blocked = (await r.run("search_docs")).decision
    assert isinstance(blocked, Deny)
    assert blocked.reason == "rate_limited"
    assert blocked.retry_allowed is True
    assert dict(blocked.details or {}) == {
        "current_calls": 3,
        "max_calls": 3,
        "window_seconds": 60,
        "reset_at": "2026-03-01T12:01:00.000Z",
    }
    clock.advance(29)  # the first two calls are 59 s old: still counted
    assert isinstance((await r.run("search_docs")).decision, Deny)
    clock.advance(1)  # now exactly 60 s old: both aged out
    assert isinstance((await r.run("search_docs")).decision, Allow)
    assert isinstance((await r.run("search_docs")).decision, Allow)
    third = (await r.run("search_docs")).decision
    assert isinstance(third, Deny)
    # The call taken at +30 s is now the oldest one left.
    assert (third.details or {})["reset_at"] == "2026-03-01T12:01:30.000Z"


async def test_a_blocked_call_takes_no_slot(rig: RigFactory, clock: ManualClock) -> None:
    r = await rig(rate())
    for _ in range(3):
        await r.run("search_docs")
    for _ in range(5):
        assert isinstance((await r.run("search_docs")).decision, Deny)
    rows = r.store.read_sync(lambda c: c.execute(text("SELECT count(*) FROM limit_events")).scalar())
    assert rows == 3


async def test_key_tool_counts_each_tool_under_one_rule_separately(rig: RigFactory) -> None:
    r = await rig(rate("tool"))
    for _ in range(3):
        await r.run("search_docs", session="a")
    assert isinstance((await r.run("search_docs", session="b")).decision, Deny)
    assert isinstance((await r.run("search_web", session="a")).decision, Allow)


async def test_key_session_counts_each_session_separately(rig: RigFactory) -> None:
    r = await rig(rate("session"))
    for _ in range(3):
        await r.run("search_docs", session="a")
    assert isinstance((await r.run("search_web", session="a")).decision, Deny)
    assert isinstance((await r.run("search_docs", session="b")).decision, Allow)


async def test_key_agent_falls_back_to_the_session(rig: RigFactory) -> None:
    r = await rig(rate("agent"))
    for _ in range(3):
        await r.run("search_docs", session="a")
    assert isinstance((await r.run("search_docs", session="a")).decision, Deny)
    assert isinstance((await r.run("search_docs", session="b")).decision, Allow)


async def test_a_session_keyed_limit_without_a_session_is_blocked_under_deny(rig: RigFactory) -> None:
    r = await rig(rate("session", "deny"))
    blocked = (await r.run("search_docs", session=None)).decision
    assert isinstance(blocked, Deny)
    assert (blocked.reason, blocked.retry_allowed) == ("session_unresolved", False)
    assert dict(blocked.details or {}) == {"limit_kind": "rate", "limit": "search"}


async def test_unresolved_calls_share_one_bucket_under_anonymous(rig: RigFactory) -> None:
    r = await rig(rate("session", "anonymous"))
    for _ in range(3):
        assert isinstance((await r.run("search_docs", session=None)).decision, Allow)
    assert isinstance((await r.run("search_docs", session=None)).decision, Deny)
    assert isinstance((await r.run("search_docs", session="own")).decision, Allow)
    keys = r.store.read_sync(
        lambda c: c.execute(text("SELECT subject FROM limit_buckets ORDER BY subject")).scalars().all()
    )
    assert keys == ["own", "unknown"]


async def test_a_pending_reservation_counts_and_a_release_gives_it_back(rig: RigFactory) -> None:
    r = await rig(rate())
    pending = [await r.reserve(r.call("search_docs"), deliver=False) for _ in range(3)]
    assert all(isinstance(p.decision, Allow) for p in pending)
    assert isinstance((await r.run("search_docs")).decision, Deny)
    await pending[0].undelivered()  # never reached the upstream
    assert isinstance((await r.run("search_docs")).decision, Allow)
    assert isinstance((await r.run("search_docs")).decision, Deny)


async def test_a_restarted_gate_counts_what_the_store_holds(rig: RigFactory) -> None:
    first = await rig(rate())
    for _ in range(2):
        await first.run("search_docs")
    second = await rig(rate())  # a new process on the same store
    await second.gate.load()
    assert isinstance((await second.run("search_docs")).decision, Allow)
    assert isinstance((await second.run("search_docs")).decision, Deny)


async def test_changing_the_limit_starts_fresh_buckets_and_reordering_keeps_them(rig: RigFactory) -> None:
    r = await rig(rate())
    for _ in range(3):
        await r.run("search_docs")
    moved = rate().replace("  rules:\n", "  rules:\n    - {name: other, match: {tool: x}, action: allow}\n")
    r.load(moved)
    assert isinstance((await r.run("search_docs")).decision, Deny)
    r.load(rate().replace("max_calls: 3", "max_calls: 4"))
    for _ in range(4):
        assert isinstance((await r.run("search_docs")).decision, Allow)
    assert isinstance((await r.run("search_docs")).decision, Deny)


async def test_limit_warning_is_published_once_per_crossing_of_80_percent(
    rig: RigFactory, clock: ManualClock
) -> None:
    r = await rig(rate().replace("max_calls: 3", "max_calls: 5"))
    for _ in range(5):
        await r.run("search_docs")
    warnings = r.published("limit_warning")
    assert len(warnings) == 1  # at the 4th call (80%), not again at the 5th
    assert (warnings[0]["kind"], warnings[0]["name"], warnings[0]["current"], warnings[0]["limit"]) == (
        "rate",
        "search",
        "4",
        "5",
    )
    assert warnings[0]["utilization"] == 0.8
    clock.advance(60)
    await r.run("search_docs")  # a fresh window: back under 80%
    for _ in range(3):
        await r.run("search_docs")
    assert len(r.published("limit_warning")) == 2


async def test_a_dry_run_peek_takes_nothing_and_sees_what_was_taken(rig: RigFactory) -> None:
    r = await rig(rate())
    call = r.call("search_docs")
    decision = r.decide(call)
    for _ in range(3):
        assert isinstance(r.gate.peek(decision, call).decision, Allow)  # type: ignore[arg-type]
    for _ in range(3):
        await r.run("search_docs")
    peeked = r.gate.peek(decision, call).decision  # type: ignore[arg-type]
    assert isinstance(peeked, Deny)
    assert peeked.reason == "rate_limited"
    rows = r.store.read_sync(lambda c: c.execute(text("SELECT count(*) FROM limit_events")).scalar())
    assert rows == 3


async def test_a_store_failure_blocks_with_store_unavailable_and_allows_a_retry(rig: RigFactory) -> None:
    r = await rig(rate())
    r.store.close_sync()
    blocked = (await r.run("search_docs")).decision
    assert isinstance(blocked, Deny)
    assert (blocked.reason, blocked.blocked_action) == ("store_unavailable", "rate_limit")
    assert blocked.retry_allowed is True


async def test_a_blocked_call_is_audited_with_its_limit_details(rig: RigFactory) -> None:
    r = await rig(rate().replace("max_calls: 3", "max_calls: 1"))
    allowed = await r.run("search_docs")
    assert allowed.limits is not None
    assert limits_metadata(allowed.limits)["charged"] is True
    blocked = await r.run("search_docs")
    assert blocked.limits is not None
    limits = limits_metadata(blocked.limits)
    assert limits["charged"] is False
    assert limits["charges"] == [
        {
            "kind": "rate",
            "name": "search",
            "bucket": "tool:search_docs",
            "amount": "1",
            "used_before": "1",
            "limit": "1",
            "window": "60s",
            "fits": False,
        }
    ]


async def test_pruning_drops_rows_no_window_reaches_and_keeps_live_ones(
    rig: RigFactory, clock: ManualClock
) -> None:
    r = await rig(rate())
    await r.run("search_docs")
    clock.advance(2 * 86_400)  # older than the window and the one-day floor
    await r.run("search_web")
    removed = await r.gate.prune()
    assert removed == 2  # search_docs' charge and its idle bucket
    left = r.store.read_sync(
        lambda c: c.execute(text("SELECT bucket_key FROM limit_buckets")).scalars().all()
    )
    assert len(left) == 1
    assert left[0].endswith(":tool:search_web")
    assert len(r.gate.mirror) == 1


async def test_a_pruned_bucket_takes_every_row_it_still_has_with_it(
    rig: RigFactory, clock: ManualClock
) -> None:
    """A row stamped after its bucket's last activity (a replica whose clock leads) goes with the
    bucket: no row outlives its bucket, so the prune never has to look for rows of no bucket."""
    r = await rig(rate())
    await r.run("search_docs")
    ahead = "2026-03-01T12:05:00.000Z"  # five minutes ahead of the bucket's last activity
    await r.store.write(
        lambda c: c.execute(
            text(
                "INSERT INTO limit_events (id, bucket_key, amount, occurred_at) "
                "SELECT 'ahead', bucket_key, '1', :at FROM limit_buckets"
            ),
            {"at": ahead},
        )
    )
    clock.advance(2 * 86_400)
    assert await r.gate.prune() == 3  # two rows and the bucket
    left = r.store.read_sync(lambda c: c.execute(text("SELECT count(*) FROM limit_events")).scalar())
    assert left == 0


async def test_the_prune_reaches_rows_through_their_buckets_on_sqlite(tmp_path: Path) -> None:
    """Its work follows the buckets and the rows it deletes: the plan searches the
    ``(bucket_key, occurred_at)`` index once per bucket and never scans the charges."""
    with temporary_store("sqlite", tmp_path) as store:
        r = await RigFactory(store, ManualClock(START))(rate())
        await r.run("search_docs")
        plan = store.read_sync(
            lambda c: [
                str(row[-1])
                for row in c.execute(
                    text("EXPLAIN QUERY PLAN " + _PRUNE_EVENTS["sqlite"].text), {"before": "x"}
                )
            ]
        )
    assert any(step.startswith("SEARCH e USING") and "limit_events_bucket" in step for step in plan), plan
    assert not any(step.startswith("SCAN e") for step in plan), plan
