"""A session's call history: what the gate check reads of it, and how the store-backed state keeps it.

The store-backed state keeps each completed call as a ``session_history`` row, so neither a
governed call's gate check nor the write that records its completion grows with the session's
history (the document held every call until issue 12's thirteenth look).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select, text

from helio_proxy.evidence import SqlSessionStore
from helio_proxy.store.tables import SESSION_HISTORY, SESSION_STATE
from tests.unit.evidence.backends import AnyStore, MakeStore, store_factory
from tests.unit.evidence.manual_clock import ManualClock


@pytest.fixture(params=["sqlite", "postgres"])
def make_sql_store(
    request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path
) -> Generator[MakeStore]:
    with store_factory(str(request.param), clock, tmp_path) as make:
        yield make


def stored(store: SqlSessionStore, session_id: str) -> tuple[str, list[tuple[int, str]]]:
    """The session's document and its history rows (``seq``, ``call_id``) as the database holds them."""

    def read(conn: Connection) -> tuple[str, list[tuple[int, str]]]:
        document = conn.execute(
            select(SESSION_STATE.c.state).where(SESSION_STATE.c.session_id == session_id)
        ).scalar_one()
        h = SESSION_HISTORY.c
        rows = conn.execute(select(h.seq, h.call_id).where(h.session_id == session_id).order_by(h.seq))
        return document, [(int(seq), str(call_id)) for seq, call_id in rows]

    return store.store.read_sync(read)


async def test_the_latest_call_of_a_tool_is_known_after_it_left_the_kept_history(
    make_store: MakeStore,
) -> None:
    store = make_store(max_calls_kept=2)
    await store.record_call("s", "orders.lookup", "c1", succeeded=True)
    await store.record_call("s", "orders.lookup", "c2", succeeded=False)
    for call_id in ("c3", "c4"):
        await store.record_call("s", "other", call_id, succeeded=True)
    for history in (True, False):
        state = await store.snapshot("s", history=history)
        assert state.last_call_id("orders.lookup", succeeded=True) == "c1"
        assert state.last_call_id("orders.lookup", succeeded=False) == "c2"
        assert state.last_call_id("other", succeeded=True) == "c4"
        assert state.last_call_id("never", succeeded=False) is None
    assert [c.call_id for c in (await store.snapshot("s")).completed_tools] == ["c3", "c4"]


async def test_a_stored_session_keeps_its_calls_as_rows_and_its_document_does_not_grow(
    make_sql_store: MakeStore,
) -> None:
    store = make_sql_store(max_calls_kept=100)
    assert isinstance(store, SqlSessionStore)
    arguments = {"order_id": "A-1001", "note": "x" * 200}
    for i in range(5):
        await store.record_call("s", "orders.lookup", f"c{i:04d}", succeeded=True, arguments=arguments)
    small, _ = stored(store, "s")
    for i in range(5, 300):
        await store.record_call("s", "orders.lookup", f"c{i:04d}", succeeded=i % 2 == 0, arguments=arguments)
    document, rows = stored(store, "s")
    assert len(document) - len(small) <= 2  # "recorded": 5 became 300
    assert json.loads(document)["format"] == 2
    assert "calls" not in json.loads(document)
    assert rows == [(seq, f"c{seq:04d}") for seq in range(200, 300)]
    gate = await store.snapshot("s", history=False)
    assert gate.completed_tools == ()
    assert gate.last_call_ids == {"orders.lookup": ("c0299", "c0298")}
    listed = (await store.snapshot("s")).completed_tools
    assert [c.call_id for c in listed] == [f"c{i:04d}" for i in range(200, 300)]
    assert listed[-1].arguments == arguments
    assert (listed[-1].succeeded, listed[-2].succeeded) == (False, True)
    # Evidence binds to a call kept in the rows, not to one deleted from them.
    kept = await store.put_evidence(
        "s", tool_name="orders.lookup", evidence_key="k", data=1, ttl_seconds=60, call_id="c0298"
    )
    gone = await store.put_evidence(
        "s", tool_name="orders.lookup", evidence_key="k2", data=1, ttl_seconds=60, call_id="c0100"
    )
    assert (kept.verified, kept.source_arguments, gone.verified) == (True, arguments, False)
    assert stored(store, "s")[1] == rows  # binding reads a row, writes none


async def test_a_document_written_before_the_history_table_moves_its_calls_on_the_next_write(
    make_sql_store: MakeStore, clock: ManualClock
) -> None:
    store = make_sql_store(max_calls_kept=3)
    assert isinstance(store, SqlSessionStore)
    legacy = {
        "format": 1,
        "last_write_ms": clock.ms,
        "evidence": [],
        "expired": {},
        "context": [],
        "calls": [
            ["orders.lookup", clock.ms, True, "old-1", {"order_id": "A-1"}],
            ["orders.lookup", clock.ms, False, "old-2", None],
        ],
        "succeeded": ["orders.lookup"],
        "called": ["orders.lookup"],
        "dependencies": {},
    }

    def as_before(conn: Connection) -> None:
        conn.execute(
            text(
                "INSERT INTO session_state (session_id, state, bytes, last_write_ms, live_until_ms) "
                "VALUES ('s', :state, 0, :now, :until)"
            ),
            {"state": json.dumps(legacy), "now": clock.ms, "until": clock.ms + 3_600_000},
        )

    store.store.submit(as_before).result()
    state = await store.snapshot("s")
    assert [c.call_id for c in state.completed_tools] == ["old-1", "old-2"]
    assert state.last_call_id("orders.lookup", succeeded=True) == "old-1"
    await store.record_call("s", "orders.lookup", "new-1", succeeded=True)
    document, rows = stored(store, "s")
    assert json.loads(document)["recorded"] == 3
    assert rows == [(0, "old-1"), (1, "old-2"), (2, "new-1")]
    entry = await store.put_evidence(
        "s", tool_name="orders.lookup", evidence_key="k", data=1, ttl_seconds=60, call_id="old-1"
    )
    assert (entry.verified, entry.source_arguments) == (True, {"order_id": "A-1"})
    await store.record_call("s", "orders.lookup", "new-2", succeeded=False)
    assert stored(store, "s")[1] == [(1, "old-2"), (2, "new-1"), (3, "new-2")]


async def test_a_swept_session_leaves_no_history_rows(make_sql_store: MakeStore, clock: ManualClock) -> None:
    store: AnyStore = make_sql_store()
    assert isinstance(store, SqlSessionStore)
    await store.record_call("idle", "t", "c1", succeeded=True)
    await store.record_call("busy", "t", "c2", succeeded=True)
    clock.advance(3_000)
    await store.record_call("busy", "t", "c3", succeeded=True)
    clock.advance(600)
    assert await store.sweep() == 1

    def history(conn: Connection) -> dict[str, int]:
        h = SESSION_HISTORY.c
        rows = conn.execute(select(h.session_id, func.count()).group_by(h.session_id))
        return {str(session_id): int(count) for session_id, count in rows}

    assert store.store.read_sync(history) == {"busy": 2}
    await store.record_call("idle", "t", "c4", succeeded=True)  # a new session under the old id
    assert stored(store, "idle")[1] == [(0, "c4")]
