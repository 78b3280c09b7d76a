"""Tool baselines in the governance store: loaded at startup, written through, taken up when
accepted elsewhere. Every test runs on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from helio_proxy.baselines import (
    BASELINE_POLL_SECONDS,
    BaselineError,
    BaselineSync,
    DurableBaselineStore,
    accept_pending,
    load_tools,
)
from helio_proxy.policy import BaselineCache, DriftEvent, ToolBaseline
from helio_proxy.policy.drift import fingerprint
from helio_proxy.store import Store
from helio_proxy.store.tables import TOOL_BASELINES

TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather.",
    "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
    "annotations": {"readOnlyHint": True, "destructiveHint": False},
}
OTHER: dict[str, Any] = {"name": "delete_user", "inputSchema": {"type": "object"}}
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def changed(**fields: Any) -> dict[str, Any]:
    tool = copy.deepcopy(TOOL)
    tool.update(fields)
    return tool


def settle(store: Store) -> None:
    """Wait until every write queued so far has committed (the writer runs jobs in order)."""
    store.submit(lambda _conn: None).result(timeout=10)


async def opened(store: Store, upstream: str = "") -> tuple[DurableBaselineStore, BaselineCache]:
    """What the proxy does at startup: load the rows, then restore the drift they remember."""
    durable = DurableBaselineStore(store, upstream, clock=lambda: NOW)
    await durable.load()
    cache = BaselineCache(durable)
    cache.restore()
    return durable, cache


async def test_first_seen_baselines_are_stored_and_loaded_by_the_next_process(store: Store) -> None:
    _, cache = await opened(store)
    assert cache.observe([TOOL, OTHER]) == []
    settle(store)
    rows = store.read_sync(load_tools(""))
    assert [(row.name, row.baseline.fingerprint) for row in rows] == [
        ("delete_user", fingerprint(OTHER)),
        ("get_weather", fingerprint(TOOL)),
    ]
    assert rows[1].first_seen_at == "2026-05-01T12:00:00.000000Z"
    assert rows[1].accepted_at is None

    durable, again = await opened(store)
    assert len(durable) == 2
    assert again.facts("get_weather").hints.readOnlyHint is True
    assert again.observe([TOOL, OTHER]) == []


async def test_a_restart_does_not_rebaseline_a_tool_that_changed_while_the_proxy_was_down(
    store: Store,
) -> None:
    _, cache = await opened(store)
    cache.observe([TOOL])
    settle(store)
    _, restarted = await opened(store)
    events = restarted.observe([changed(description="Now also emails the admin.")])
    assert events == [DriftEvent("tool_drift", "get_weather", ("description",))]
    assert restarted.facts("get_weather").drifted


async def test_the_drifted_definition_is_recorded_as_pending_and_cleared_when_it_changes_back(
    store: Store,
) -> None:
    _, cache = await opened(store)
    cache.observe([TOOL])
    new = changed(annotations={"readOnlyHint": False})
    cache.observe([new])
    settle(store)
    [row] = store.read_sync(load_tools(""))
    assert row.baseline.fingerprint == fingerprint(TOOL)
    assert row.pending is not None
    assert row.pending.current.fingerprint == fingerprint(new)
    assert row.pending.current.definition == new
    assert row.pending.aspects == ("annotations",)
    assert row.pending_since == "2026-05-01T12:00:00.000000Z"

    cache.observe([TOOL])
    settle(store)
    [row] = store.read_sync(load_tools(""))
    assert row.pending is None


async def test_a_restart_keeps_a_drifted_tool_drifted_before_the_first_tools_list(store: Store) -> None:
    _, cache = await opened(store)
    cache.observe([TOOL])
    new = changed(description="x")
    cache.observe([new])
    settle(store)
    _, restarted = await opened(store)
    assert restarted.facts("get_weather").drifted_aspects == ("description",)
    assert restarted.observe([new]) == []  # the same drift is not reported twice


async def test_an_acceptance_in_process_is_stored_with_who_and_when(store: Store) -> None:
    _, cache = await opened(store)
    cache.observe([TOOL])
    new = changed(description="x")
    cache.observe([new])
    cache.accept("get_weather", accepted_by="alice")
    settle(store)
    [row] = store.read_sync(load_tools(""))
    assert (row.baseline.fingerprint, row.baseline.accepted_by) == (fingerprint(new), "alice")
    assert row.accepted_at == "2026-05-01T12:00:00.000000Z"
    assert row.first_seen_at == "2026-05-01T12:00:00.000000Z"
    assert row.pending is None
    _, restarted = await opened(store)
    assert restarted.observe([new]) == []


async def test_an_operator_acceptance_from_another_process_reaches_the_running_proxy(store: Store) -> None:
    durable, cache = await opened(store)
    cache.observe([TOOL])
    new = changed(description="x")
    cache.observe([new])
    settle(store)
    accepted = store.submit(accept_pending("", "get_weather", "bob", NOW)).result()
    assert accepted.baseline.fingerprint == fingerprint(new)
    seen: list[DriftEvent] = []
    sync = BaselineSync(durable, cache, on_drift=seen.extend)
    events = await sync.sync_once()
    assert events == [DriftEvent("tool_drift_accepted", "get_weather")]
    assert events[0].accepted_by == "bob"
    assert seen == events
    assert not cache.facts("get_weather").drifted
    assert await sync.sync_once() == []


async def test_accepting_an_unknown_or_undrifted_tool_is_refused(store: Store) -> None:
    _, cache = await opened(store)
    cache.observe([TOOL])
    settle(store)
    with pytest.raises(BaselineError, match="no baseline for tool 'nope'"):
        store.submit(accept_pending("", "nope", None, NOW)).result()
    with pytest.raises(BaselineError, match="has not drifted"):
        store.submit(accept_pending("", "get_weather", None, NOW)).result()
    cache.observe([TOOL, TOOL])
    settle(store)
    with pytest.raises(BaselineError, match="listed more than once"):
        store.submit(accept_pending("", "get_weather", None, NOW)).result()


async def test_a_refresh_never_undoes_a_write_of_this_proxy_still_in_flight(store: Store) -> None:
    durable, cache = await opened(store)
    cache.observe([TOOL])
    cache.observe([changed(description="x")])
    cache.accept("get_weather", accepted_by="alice")  # queued, maybe not committed yet
    assert await durable.refresh() == []
    assert durable.get("get_weather") == ToolBaseline.of(changed(description="x"), accepted_by="alice")


async def test_a_first_seen_baseline_never_replaces_one_already_stored(store: Store) -> None:
    """Two proxies on one database: the first to baseline a tool wins, the other takes it up."""
    first, _ = await opened(store)
    second, cache = await opened(store)
    first.add(ToolBaseline.of(TOOL))
    settle(store)
    cache.observe([changed(description="another server's view")])
    settle(store)
    assert await second.refresh() == ["get_weather"]
    assert second.get("get_weather") == ToolBaseline.of(TOOL)
    assert cache.rebase("get_weather") == DriftEvent("tool_drift", "get_weather", ("description",))


async def test_baselines_are_kept_per_upstream(store: Store) -> None:
    _, left = await opened(store, "left")
    left.observe([TOOL])
    settle(store)
    right, _ = await opened(store, "right")
    assert len(right) == 0
    rows = store.read_sync(lambda conn: conn.execute(select(TOOL_BASELINES.c.upstream)).all())
    assert [row.upstream for row in rows] == ["left"]


async def test_a_failed_write_is_logged_and_never_raised(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    durable, cache = await opened(store)
    store.close_sync()
    with caplog.at_level(logging.ERROR, "helio_proxy.baselines"):
        assert cache.observe([TOOL]) == []
    assert durable.get("get_weather") == ToolBaseline.of(TOOL)
    assert "tool baseline of 'get_weather' could not be stored" in caplog.text


async def test_the_poll_reports_an_unreadable_store_once_and_keeps_polling(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    durable, cache = await opened(store)
    store.close_sync()
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) > 3:
            raise asyncio.CancelledError

    sync = BaselineSync(durable, cache, sleep=nap)
    with caplog.at_level(logging.WARNING, "helio_proxy.baselines"), pytest.raises(asyncio.CancelledError):
        await sync.run()
    assert naps == [BASELINE_POLL_SECONDS] * 4
    assert caplog.text.count("could not be read from the store") == 1
