"""The store's caps bound its memory: writes past one fail with a stable limit name (every store)."""

from __future__ import annotations

import pytest

from helio_proxy.evidence import StoreCapacityError, StoreLimits
from helio_proxy.evidence.model import CallHistory, CompletedCall
from helio_proxy.evidence.state import COMPACT_AFTER, SessionState
from tests.unit.evidence.backends import MakeStore
from tests.unit.evidence.manual_clock import ManualClock


async def test_new_sessions_past_max_sessions_are_refused(clock: ManualClock, make_store: MakeStore) -> None:
    store = make_store(max_sessions=2)
    await store.put_context("a", "k", 1)
    await store.put_context("b", "k", 1)
    with pytest.raises(StoreCapacityError) as caught:
        await store.put_context("c", "k", 1)
    assert (caught.value.limit, caught.value.code, caught.value.status) == (
        "max_sessions",
        "capacity_exhausted",
        503,
    )
    await store.put_context("a", "k2", 2)  # existing sessions keep working


async def test_idle_sessions_are_swept_to_make_room(clock: ManualClock, make_store: MakeStore) -> None:
    store = make_store(max_sessions=1)
    await store.put_context("a", "k", 1)
    clock.advance(3_600)
    await store.put_context("b", "k", 1)
    assert store.session_count == 1
    assert (await store.snapshot("a")).context == {}


@pytest.mark.parametrize("kind", ["evidence", "context", "dependencies"])
async def test_keys_per_session_are_capped(clock: ManualClock, make_store: MakeStore, kind: str) -> None:
    store = make_store(max_keys_per_session=2)

    async def write(key: str) -> None:
        if kind == "evidence":
            await store.put_evidence("s", tool_name="t", evidence_key=key, data=1, ttl_seconds=60)
        elif kind == "context":
            await store.put_context("s", key, 1)
        else:
            await store.add_dependencies("s", key, ["x"])

    await write("one")
    await write("two")
    await write("two")  # replacing is not growing
    with pytest.raises(StoreCapacityError) as caught:
        await write("three")
    assert caught.value.limit == "max_keys_per_session"


async def test_expired_keys_still_count_as_seen_keys(clock: ManualClock, make_store: MakeStore) -> None:
    store = make_store(max_keys_per_session=1)
    await store.put_evidence("s", tool_name="t", evidence_key="a", data=1, ttl_seconds=1)
    clock.advance(2)
    await store.snapshot("s")
    with pytest.raises(StoreCapacityError):
        await store.put_evidence("s", tool_name="t", evidence_key="b", data=1, ttl_seconds=1)
    await store.put_evidence("s", tool_name="t", evidence_key="a", data=1, ttl_seconds=1)


async def test_session_bytes_are_capped_and_replacing_a_value_frees_its_bytes(
    clock: ManualClock, make_store: MakeStore
) -> None:
    store = make_store(max_session_bytes=100)
    await store.put_context("s", "k", "x" * 90)
    with pytest.raises(StoreCapacityError) as caught:
        await store.put_context("s", "other", "y" * 20)
    assert caught.value.limit == "max_session_bytes"
    await store.put_context("s", "k", "x")
    await store.put_context("s", "other", "y" * 20)


async def test_total_bytes_are_capped_across_sessions_and_freed_by_expiry(
    clock: ManualClock, make_store: MakeStore
) -> None:
    store = make_store(max_total_bytes=100)
    await store.put_evidence("a", tool_name="t", evidence_key="k", data="x" * 90, ttl_seconds=1)
    with pytest.raises(StoreCapacityError) as caught:
        await store.put_context("b", "k", "y" * 20)
    assert caught.value.limit == "max_total_bytes"
    clock.advance(1)
    await store.sweep()
    await store.put_context("b", "k", "y" * 20)


async def test_call_history_keeps_the_latest_calls_but_success_stays_remembered(
    clock: ManualClock, make_store: MakeStore
) -> None:
    store = make_store(max_calls_kept=2)
    await store.record_call("s", "auth.verify", "c1", succeeded=True)
    await store.record_call("s", "x", "c2", succeeded=False)
    await store.record_call("s", "x", "c3", succeeded=False)
    state = await store.snapshot("s")
    assert [c.call_id for c in state.completed_tools] == ["c2", "c3"]
    assert "auth.verify" in state.succeeded_tools
    entry = await store.put_evidence(
        "s", tool_name="auth.verify", evidence_key="k", data=1, ttl_seconds=5, call_id="c1"
    )
    assert not entry.verified  # the call fell out of the history: it can no longer vouch


async def test_distinct_tools_per_session_are_capped(clock: ManualClock, make_store: MakeStore) -> None:
    store = make_store(max_tools_per_session=1)
    await store.record_call("s", "a", "c1", succeeded=True)
    await store.record_call("s", "a", "c2", succeeded=True)
    with pytest.raises(StoreCapacityError) as caught:
        await store.record_call("s", "b", "c3", succeeded=True)
    assert caught.value.limit == "max_tools_per_session"


async def test_a_snapshot_keeps_the_calls_it_was_taken_with_while_the_history_moves_on(
    clock: ManualClock, make_store: MakeStore
) -> None:
    store = make_store(max_calls_kept=3)
    for i in range(5):
        await store.record_call("s", "t", f"c{i}", succeeded=True)
    before = await store.snapshot("s")
    last = 5 + 2 * COMPACT_AFTER + 1  # past two compactions of the in-memory list
    for i in range(5, last):
        await store.record_call("s", "t", f"c{i}", succeeded=False)
    after = await store.snapshot("s")
    assert [c.call_id for c in before.completed_tools] == ["c2", "c3", "c4"]
    assert (len(before.completed_tools), before.completed_tools[-1].call_id) == (3, "c4")
    assert [c.call_id for c in after.completed_tools] == [f"c{i}" for i in range(last - 3, last)]
    assert [c.succeeded for c in after.completed_tools] == [False, False, False]
    assert "t" in after.succeeded_tools
    assert "t" in before.succeeded_tools


def test_a_sessions_call_list_stays_bounded_and_forgets_trimmed_calls() -> None:
    limits = StoreLimits(max_calls_kept=10)
    state = SessionState(last_write_ms=0)
    seen: list[int] = []
    for i in range(1_000):
        state.record_call(limits, "t", f"c{i}", i % 3 == 0, None)
        seen.append(len(state.calls))
    assert max(seen) <= 10 + COMPACT_AFTER
    assert [c.call_id for c in state.kept_calls()] == [f"c{i}" for i in range(990, 1_000)]
    assert set(state.calls_by_id) == {f"c{i}" for i in range(990, 1_000)}
    stored = SessionState.from_json(state.to_json())  # the calls are the store's rows, not the document's
    assert (stored.recorded, stored.last_calls, len(stored.kept_calls())) == (
        1_000,
        {"t": ("c999", "c999")},
        0,
    )


def test_a_call_history_reads_like_the_tuple_it_stands_for() -> None:
    calls = [CompletedCall(f"t{i}", i, i % 2 == 0, f"c{i}") for i in range(6)]
    history = CallHistory(calls, 2, 5)
    expected = tuple(calls[2:5])
    assert list(history) == list(expected)
    assert (len(history), history[0], history[-1], history[1:]) == (3, calls[2], calls[4], expected[1:])
    assert history == expected
    assert history == CallHistory(list(expected))
    assert history != expected[:2]
    assert CallHistory([]) == ()
    for index in (3, -4):
        with pytest.raises(IndexError):
            history[index]
    calls.append(CompletedCall("later", 9, True, "c9"))  # the state appends: the view does not move
    assert tuple(history) == expected
