"""Baselines and drift: fingerprints, aspects, duplicates, reverts, acceptance."""

import copy
from typing import Any

import pytest

from helio_proxy.policy import (
    BaselineCache,
    DriftEvent,
    Hints,
    MemoryBaselineStore,
    PendingDrift,
    ToolBaseline,
)
from helio_proxy.policy.drift import drifted_aspects, fingerprint

TOOL: dict[str, Any] = {
    "name": "get_weather",
    "title": "Weather",
    "description": "Current weather.",
    "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
    "outputSchema": {"type": "object"},
    "annotations": {"readOnlyHint": True, "destructiveHint": False},
}


def changed(**fields: Any) -> dict[str, Any]:
    tool = copy.deepcopy(TOOL)
    tool.update(fields)
    return tool


def test_a_fingerprint_ignores_key_order() -> None:
    reordered = dict(reversed(list(TOOL.items())))
    reordered["inputSchema"] = {"properties": {"city": {"type": "string"}}, "type": "object"}
    assert fingerprint(reordered) == fingerprint(TOOL)
    assert fingerprint(changed(description="x")) != fingerprint(TOOL)


@pytest.mark.parametrize(
    ("fields", "aspects"),
    [
        ({"annotations": {"readOnlyHint": False}}, ("annotations",)),
        ({"inputSchema": {"type": "object"}}, ("inputSchema",)),
        ({"outputSchema": None}, ("outputSchema",)),
        ({"description": "Now also deletes."}, ("description",)),
        ({"title": "W"}, ("title",)),
        ({"icons": [{"src": "x"}]}, ("other",)),
        ({"title": "W", "_meta": {"k": 1}}, ("title", "other")),
    ],
)
def test_drifted_aspects_name_what_changed(fields: dict[str, Any], aspects: tuple[str, ...]) -> None:
    assert drifted_aspects(TOOL, changed(**fields)) == aspects


def test_the_first_definition_seen_becomes_the_baseline_and_sets_the_hints() -> None:
    cache = BaselineCache()
    assert not cache.facts("get_weather").known
    assert cache.observe([TOOL]) == []
    facts = cache.facts("get_weather")
    assert facts.known
    assert facts.hints == Hints(readOnlyHint=True, destructiveHint=False)
    assert not facts.drifted
    assert len(cache) == 1


def test_a_changed_definition_is_drift_and_rules_keep_matching_the_baseline_hints() -> None:
    cache = BaselineCache()
    cache.observe([TOOL])
    events = cache.observe([changed(annotations={"readOnlyHint": False}, description="x")])
    assert events == [DriftEvent("tool_drift", "get_weather", ("annotations", "description"))]
    facts = cache.facts("get_weather")
    assert facts.drifted_aspects == ("annotations", "description")
    assert facts.hints.readOnlyHint is True
    assert facts.current_hints == Hints(readOnlyHint=False)
    assert cache.drifted() == {"get_weather": ("annotations", "description")}


def test_the_same_drift_seen_again_is_not_a_new_event_and_a_revert_is() -> None:
    cache = BaselineCache()
    cache.observe([TOOL])
    cache.observe([changed(title="X")])
    assert cache.observe([changed(title="X")]) == []
    assert cache.observe([TOOL]) == [DriftEvent("tool_drift_reverted", "get_weather")]
    assert not cache.facts("get_weather").drifted


def test_a_tool_listed_twice_in_one_page_is_duplicate_drift() -> None:
    cache = BaselineCache()
    cache.observe([TOOL])
    events = cache.observe([TOOL, TOOL])
    assert events == [DriftEvent("tool_drift", "get_weather", ("duplicate",))]


def test_entries_without_a_name_are_ignored() -> None:
    cache = BaselineCache()
    assert cache.observe([{"description": "nameless"}, "not an object", {"name": ""}]) == []
    assert len(cache) == 0


def test_accepting_a_drifted_tool_makes_its_new_definition_the_baseline() -> None:
    cache = BaselineCache()
    cache.observe([TOOL])
    new = changed(annotations={"readOnlyHint": False, "destructiveHint": True})
    cache.observe([new])
    accepted = cache.accept("get_weather", accepted_by="ops@example.com")
    assert accepted.fingerprint == fingerprint(new)
    assert accepted.accepted_by == "ops@example.com"
    facts = cache.facts("get_weather")
    assert not facts.drifted
    assert facts.hints.destructiveHint is True
    assert cache.observe([new]) == []


def test_accepting_an_unknown_tool_raises_key_error_and_an_undrifted_one_is_a_no_op() -> None:
    cache = BaselineCache()
    with pytest.raises(KeyError):
        cache.accept("nope")
    cache.observe([TOOL])
    assert cache.accept("get_weather").fingerprint == fingerprint(TOOL)


def test_a_baseline_keeps_its_own_copy_of_the_definition() -> None:
    cache = BaselineCache()
    listed = changed()
    cache.observe([listed])
    listed["description"] = "mutated in place"
    assert cache.observe([listed]) == [DriftEvent("tool_drift", "get_weather", ("description",))]


def test_a_drift_is_kept_in_the_store_as_pending_until_the_tool_changes_back() -> None:
    store = MemoryBaselineStore()
    cache = BaselineCache(store)
    cache.observe([TOOL])
    new = changed(description="x")
    cache.observe([new])
    assert store.pending() == {"get_weather": PendingDrift(ToolBaseline.of(new), ("description",))}
    cache.observe([TOOL])
    assert store.pending() == {}


def test_a_drifted_tool_that_changes_again_is_a_new_drift_event_even_with_the_same_aspects() -> None:
    store = MemoryBaselineStore()
    cache = BaselineCache(store)
    cache.observe([TOOL])
    cache.observe([changed(description="x")])
    events = cache.observe([changed(description="y")])
    assert events == [DriftEvent("tool_drift", "get_weather", ("description",))]
    assert events[0].current_sha256 == fingerprint(changed(description="y"))
    assert store.pending()["get_weather"].current.fingerprint == fingerprint(changed(description="y"))


def test_restoring_from_a_store_keeps_a_remembered_drift_before_any_tools_list() -> None:
    store = MemoryBaselineStore()
    store.add(ToolBaseline.of(TOOL))
    new = changed(annotations={"readOnlyHint": False})
    store.set_pending("get_weather", PendingDrift(ToolBaseline.of(new), ("annotations",)))
    cache = BaselineCache(store)
    cache.restore()
    assert cache.facts("get_weather").drifted_aspects == ("annotations",)
    assert cache.observe([new]) == []  # the same drift: not a new event
    assert cache.accept("get_weather").fingerprint == fingerprint(new)


def test_a_baseline_accepted_elsewhere_is_taken_up_by_rebase_as_an_acceptance() -> None:
    store = MemoryBaselineStore()
    cache = BaselineCache(store)
    cache.observe([TOOL])
    new = changed(description="x")
    cache.observe([new])
    store.accept(ToolBaseline.of(new, accepted_by="alice"))  # as another process would
    event = cache.rebase("get_weather")
    assert event == DriftEvent("tool_drift_accepted", "get_weather")
    assert event.accepted_by == "alice"
    assert not cache.facts("get_weather").drifted
    assert cache.rebase("get_weather") is None


def test_rebasing_a_tool_not_seen_here_follows_the_new_baseline_without_an_event() -> None:
    store = MemoryBaselineStore()
    cache = BaselineCache(store)
    store.add(ToolBaseline.of(TOOL))
    assert cache.facts("get_weather").hints.readOnlyHint is True
    store.accept(ToolBaseline.of(changed(annotations={"readOnlyHint": False})))
    assert cache.rebase("get_weather") is None
    assert cache.facts("get_weather").hints.readOnlyHint is False
