"""Every session store (in memory, and store-backed on SQLite and PostgreSQL): TTL, missing vs expired, verification, history and idle expiry."""

from __future__ import annotations

from helio_proxy.evidence import EvidenceEntry, SessionSnapshot
from tests.unit.evidence.backends import AnyStore
from tests.unit.evidence.manual_clock import ManualClock


async def mark(store: AnyStore, key: str = "order_data", *, call_id: str | None = None) -> EvidenceEntry:
    return await store.put_evidence(
        "s1", tool_name="orders.lookup", evidence_key=key, data={"id": 7}, ttl_seconds=60, call_id=call_id
    )


async def test_marked_evidence_is_live_until_its_ttl_and_then_listed_as_expired(
    store: AnyStore, clock: ManualClock
) -> None:
    await mark(store)
    state = await store.snapshot("s1")
    entry = state.evidence["order_data"]
    assert (entry.timestamp, entry.expires_at) == (clock.ms, clock.ms + 60_000)
    assert entry.data == {"id": 7}
    clock.advance(59.999)
    assert "order_data" in (await store.snapshot("s1")).evidence
    clock.advance(0.001)
    state = await store.snapshot("s1")
    assert state.evidence == {}
    assert state.expired == {"order_data": "orders.lookup"}


async def test_a_key_never_marked_is_neither_live_nor_expired(store: AnyStore) -> None:
    await mark(store, "order_data")
    state = await store.snapshot("s1")
    assert "refund_policy" not in state.evidence
    assert "refund_policy" not in state.expired


async def test_marking_an_expired_key_again_makes_it_live(store: AnyStore, clock: ManualClock) -> None:
    await mark(store)
    clock.advance(61)
    await store.snapshot("s1")
    await mark(store)
    state = await store.snapshot("s1")
    assert "order_data" in state.evidence
    assert state.expired == {}


async def test_unknown_session_has_an_empty_snapshot(store: AnyStore) -> None:
    assert await store.snapshot("nobody") == SessionSnapshot("nobody")
    assert store.session_count == 0


async def test_session_ids_are_exact(store: AnyStore) -> None:
    await mark(store)
    assert (await store.snapshot("S1")).evidence == {}
    assert (await store.snapshot("s1 ")).evidence == {}


async def test_evidence_is_verified_only_for_a_succeeded_call_of_the_same_tool_in_the_same_session(
    store: AnyStore,
) -> None:
    await store.record_call("s1", "orders.lookup", "ok-call", succeeded=True)
    await store.record_call("s1", "orders.lookup", "failed-call", succeeded=False)
    await store.record_call("s2", "orders.lookup", "other-session-call", succeeded=True)
    await store.record_call("s1", "orders.search", "other-tool-call", succeeded=True)
    assert (await mark(store, call_id="ok-call")).verified
    for call_id in ("failed-call", "other-session-call", "other-tool-call", "never-seen", None):
        entry = await mark(store, call_id=call_id)
        assert not entry.verified, call_id
        assert entry.call_id == call_id


async def test_proxy_produced_evidence_is_verified_and_keeps_only_a_digest(
    store: AnyStore, clock: ManualClock
) -> None:
    entry = await store.record_produced("s1", "order_data", "c1", "sha256:ab", 300, "orders.lookup")
    assert entry.verified
    assert entry.produced
    assert entry.data == {"result_digest": "sha256:ab"}
    assert entry.expires_at == clock.ms + 300_000


async def test_completed_calls_remember_success_stickily_and_attempts(store: AnyStore) -> None:
    await store.record_call("s1", "auth.verify", "c1", succeeded=False)
    await store.record_call("s1", "orders.lookup", "c2", succeeded=True)
    await store.record_call("s1", "orders.lookup", "c3", succeeded=False)
    state = await store.snapshot("s1")
    assert [(c.tool_name, c.succeeded, c.call_id) for c in state.completed_tools] == [
        ("auth.verify", False, "c1"),
        ("orders.lookup", True, "c2"),
        ("orders.lookup", False, "c3"),
    ]
    assert state.succeeded_tools == {"orders.lookup"}
    assert state.called_tools == {"orders.lookup", "auth.verify"}


async def test_declared_dependencies_accumulate_in_order_without_duplicates(
    store: AnyStore,
) -> None:
    await store.add_dependencies("s1", "orders.refund", ["a", "b", "a"])
    await store.add_dependencies("s1", "orders.refund", ["c", "b"])
    await store.add_dependencies("s1", "mail.send", ["a"])
    state = await store.snapshot("s1")
    assert state.dependencies == {"orders.refund": ("a", "b", "c"), "mail.send": ("a",)}


async def test_context_values_are_set_and_replaced(store: AnyStore) -> None:
    await store.put_context("s1", "tier", "gold")
    await store.put_context("s1", "tier", None)
    await store.put_context("s1", "n", 3)
    assert (await store.snapshot("s1")).context == {"tier": None, "n": 3}


async def test_sweep_drops_sessions_idle_for_an_hour_without_live_evidence(
    store: AnyStore, clock: ManualClock
) -> None:
    await store.put_context("idle", "k", 1)
    await store.put_evidence(
        "holding", tool_name="t", evidence_key="k", data=1, ttl_seconds=86_400, call_id=None
    )
    clock.advance(3_599)
    assert await store.sweep() == 0
    clock.advance(1)
    assert await store.sweep() == 1
    assert store.session_count == 1
    assert (await store.snapshot("idle")).context == {}
    assert "k" in (await store.snapshot("holding")).evidence


async def test_sweep_expires_evidence_before_judging_idleness(store: AnyStore, clock: ManualClock) -> None:
    await mark(store)  # ttl 60 s
    clock.advance(3_600)
    assert await store.sweep() == 1
