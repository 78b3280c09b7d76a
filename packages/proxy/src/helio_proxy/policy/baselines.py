"""Tool baselines: the definition each tool had when the proxy first saw it (or an operator
last accepted it), and the drift of later definitions from it.

Rules match a tool's *baseline* annotations, so a server cannot loosen its own governance by
re-describing a tool; a changed definition is drift, handled by ``policies.on_tool_drift``.
Baselines live behind :class:`BaselineStore`; the in-memory store is per process (a restart
re-baselines) until a durable store implements the same protocol.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from helio_proxy.policy.drift import DUPLICATE, drifted_aspects, fingerprint
from helio_proxy.policy.facts import UNKNOWN_TOOL, Hints, ToolFacts


@dataclass(frozen=True, slots=True)
class ToolBaseline:
    """One tool's reference definition."""

    name: str
    definition: Mapping[str, Any]
    fingerprint: str
    accepted_by: str | None = None
    """Who accepted this definition after drift (``None`` for a first-seen baseline)."""

    @classmethod
    def of(cls, definition: Mapping[str, Any], *, accepted_by: str | None = None) -> ToolBaseline:
        """A baseline holding its own copy of ``definition`` (later changes to it are not seen)."""
        own = copy.deepcopy(dict(definition))
        return cls(str(own["name"]), own, fingerprint(own), accepted_by)

    @property
    def hints(self) -> Hints:
        return Hints.from_annotations(self.definition.get("annotations"))


class BaselineStore(Protocol):
    """Where baselines are kept. Reads are synchronous: a durable store keeps them in memory too."""

    def get(self, name: str) -> ToolBaseline | None: ...

    def put(self, baseline: ToolBaseline) -> None: ...

    def __len__(self) -> int: ...


class MemoryBaselineStore:
    """Baselines for the life of the process."""

    def __init__(self) -> None:
        self._baselines: dict[str, ToolBaseline] = {}

    def get(self, name: str) -> ToolBaseline | None:
        return self._baselines.get(name)

    def put(self, baseline: ToolBaseline) -> None:
        self._baselines[baseline.name] = baseline

    def __len__(self) -> int:
        return len(self._baselines)


@dataclass(frozen=True, slots=True)
class DriftEvent:
    """A change in a tool's drift state, for the log and the audit trail."""

    kind: str
    """``tool_drift`` (a new or different drift) or ``tool_drift_reverted`` (back to the baseline)."""
    tool: str
    aspects: tuple[str, ...] = ()


class BaselineCache:
    """Baselines plus the current drift of every tool, as :class:`ToolFacts` for ``decide()``."""

    def __init__(self, store: BaselineStore | None = None) -> None:
        self.store: BaselineStore = store if store is not None else MemoryBaselineStore()
        self.primed = False
        """Whether a complete ``tools/list`` has been seen (until then unknown tools get MCP defaults)."""
        self._current: dict[str, ToolBaseline] = {}
        self._facts: dict[str, ToolFacts] = {}

    def __len__(self) -> int:
        return len(self.store)

    def facts(self, name: str) -> ToolFacts:
        """What ``decide()`` should know about tool ``name``."""
        found = self._facts.get(name)
        if found is not None:
            return found
        baseline = self.store.get(name)
        if baseline is None:
            return UNKNOWN_TOOL
        facts = ToolFacts(hints=baseline.hints, known=True)
        self._facts[name] = facts
        return facts

    def drifted(self) -> dict[str, tuple[str, ...]]:
        """Every drifted tool with its aspects."""
        return {name: facts.drifted_aspects for name, facts in self._facts.items() if facts.drifted}

    def observe(self, tools: Iterable[Any]) -> list[DriftEvent]:
        """Take one ``tools/list`` page (its ``tools`` array); baseline new tools, detect drift."""
        definitions: dict[str, Mapping[str, Any]] = {}
        repeated: set[str] = set()
        for item in tools:
            if not isinstance(item, Mapping):
                continue
            definition = cast(Mapping[str, Any], item)
            name = definition.get("name")
            if not isinstance(name, str) or not name:
                continue
            if name in definitions:
                repeated.add(name)
            definitions[name] = definition
        events: list[DriftEvent] = []
        for name, definition in definitions.items():
            event = self._observe_one(name, definition, duplicate=name in repeated)
            if event is not None:
                events.append(event)
        return events

    def _observe_one(self, name: str, definition: Mapping[str, Any], *, duplicate: bool) -> DriftEvent | None:
        seen = ToolBaseline.of(definition)
        baseline = self.store.get(name)
        if baseline is None:
            baseline = seen
            self.store.put(seen)
        before = self.facts(name).drifted_aspects
        aspects: tuple[str, ...] = ()
        if seen.fingerprint != baseline.fingerprint:
            aspects = drifted_aspects(baseline.definition, seen.definition)
        if duplicate:
            aspects = (*aspects, DUPLICATE)
        if aspects:
            self._current[name] = seen
            self._facts[name] = ToolFacts(
                hints=baseline.hints, known=True, drifted_aspects=aspects, current_hints=seen.hints
            )
        else:
            self._current.pop(name, None)
            self._facts[name] = ToolFacts(hints=baseline.hints, known=True)
        if aspects == before:
            return None
        return DriftEvent("tool_drift" if aspects else "tool_drift_reverted", name, aspects)

    def accept(self, name: str, *, accepted_by: str | None = None) -> ToolBaseline:
        """Make the tool's current (drifted) definition its baseline; raise ``KeyError`` if unknown."""
        current = self._current.pop(name, None)
        if current is None:
            baseline = self.store.get(name)
            if baseline is None:
                raise KeyError(name)
            return baseline
        accepted = ToolBaseline(current.name, current.definition, current.fingerprint, accepted_by)
        self.store.put(accepted)
        self._facts[name] = ToolFacts(hints=accepted.hints, known=True)
        return accepted
