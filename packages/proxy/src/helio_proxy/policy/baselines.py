"""Tool baselines: the definition each tool had when the proxy first saw it (or an operator
last accepted it), and the drift of later definitions from it.

Rules match a tool's *baseline* annotations, so a server cannot loosen its own governance by
re-describing a tool; a changed definition is drift, handled by ``policies.on_tool_drift``.
Baselines live behind :class:`BaselineStore`: :class:`MemoryBaselineStore` lasts as long as the
process; the proxy uses a durable one (:mod:`helio_proxy.baselines`) so a restart keeps them.
Everything here is pure: a store does its I/O behind synchronous, non-blocking methods.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from helio_proxy.policy.drift import DUPLICATE, drifted_aspects, fingerprint
from helio_proxy.policy.facts import PENDING_TOOL, UNKNOWN_TOOL, Hints, ToolFacts


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


@dataclass(frozen=True, slots=True)
class PendingDrift:
    """A tool's last seen definition while it differs from the baseline: what accepting would adopt."""

    current: ToolBaseline
    aspects: tuple[str, ...]


class BaselineStore(Protocol):
    """Where baselines, and drift not yet accepted, are kept.

    Reads are synchronous (a durable store keeps everything in memory too); writes never block
    and never raise (a durable store queues them and logs a failure).
    """

    def get(self, name: str) -> ToolBaseline | None: ...

    def pending(self) -> Mapping[str, PendingDrift]:
        """Every drifted tool's current definition (what :meth:`BaselineCache.restore` takes up)."""
        ...

    def add(self, baseline: ToolBaseline) -> None:
        """A tool seen for the first time (a durable store keeps a baseline it already holds)."""
        ...

    def accept(self, baseline: ToolBaseline) -> None:
        """An operator made ``baseline`` the tool's baseline; its pending drift is gone."""
        ...

    def set_pending(self, name: str, drift: PendingDrift | None) -> None:
        """The tool's drift changed (``None``: it matches its baseline again)."""
        ...

    def __len__(self) -> int: ...


class MemoryBaselineStore:
    """Baselines for the life of the process."""

    def __init__(self) -> None:
        self._baselines: dict[str, ToolBaseline] = {}
        self._pending: dict[str, PendingDrift] = {}

    def get(self, name: str) -> ToolBaseline | None:
        return self._baselines.get(name)

    def pending(self) -> Mapping[str, PendingDrift]:
        return dict(self._pending)

    def add(self, baseline: ToolBaseline) -> None:
        self._baselines.setdefault(baseline.name, baseline)

    def accept(self, baseline: ToolBaseline) -> None:
        self._baselines[baseline.name] = baseline
        self._pending.pop(baseline.name, None)

    def set_pending(self, name: str, drift: PendingDrift | None) -> None:
        if drift is None:
            self._pending.pop(name, None)
        else:
            self._pending[name] = drift

    def __len__(self) -> int:
        return len(self._baselines)


DriftKind = Literal["tool_drift", "tool_drift_reverted", "tool_drift_accepted"]


@dataclass(frozen=True, slots=True)
class DriftEvent:
    """A change in a tool's drift state, for the log and the audit trail.

    Events compare by ``kind``, ``tool`` and ``aspects``; the fingerprints and ``accepted_by``
    are details for the record.
    """

    kind: DriftKind
    """``tool_drift`` (a new or different drift), ``tool_drift_reverted`` (the upstream went back
    to the baseline) or ``tool_drift_accepted`` (an operator made the current definition the baseline)."""
    tool: str
    aspects: tuple[str, ...] = ()
    baseline_sha256: str | None = field(default=None, compare=False)
    """Fingerprint of the baseline in force after the event (for an acceptance: the new one)."""
    current_sha256: str | None = field(default=None, compare=False)
    """Fingerprint of the definition the upstream lists now."""
    accepted_by: str | None = field(default=None, compare=False)
    """Who accepted (``tool_drift_accepted`` only; ``None`` when not given)."""


class BaselineCache:
    """Baselines plus the current drift of every tool, as :class:`ToolFacts` for ``decide()``."""

    def __init__(self, store: BaselineStore | None = None) -> None:
        self.store: BaselineStore = store if store is not None else MemoryBaselineStore()
        self.primed = False
        """Whether a complete ``tools/list`` has been seen (until then unknown tools get MCP defaults)."""
        self._current: dict[str, ToolBaseline] = {}
        """The last definition seen of each tool (or the drifted one a restart restored)."""
        self._facts: dict[str, ToolFacts] = {}

    def __len__(self) -> int:
        return len(self.store)

    def restore(self) -> None:
        """Take up the drift the store remembers, so a tool that was drifted before a restart
        stays drifted (blocked, under the default ``on_tool_drift``) until it is accepted or
        changes back, even before the first ``tools/list``."""
        for name, drift in self.store.pending().items():
            baseline = self.store.get(name)
            if baseline is None or not drift.aspects:
                continue
            self._current[name] = drift.current
            self._facts[name] = _facts_of(baseline, drift.current, drift.aspects)

    def facts(self, name: str) -> ToolFacts:
        """What ``decide()`` should know about tool ``name``."""
        found = self._facts.get(name)
        if found is not None:
            return found
        baseline = self.store.get(name)
        if baseline is None:
            return UNKNOWN_TOOL if self.primed else PENDING_TOOL
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
            self.store.add(seen)
        return self._judge(name, baseline, seen, duplicate=duplicate, resolved="tool_drift_reverted")

    def rebase(self, name: str) -> DriftEvent | None:
        """The store's baseline of ``name`` changed outside this cache (an operator accepted a
        definition from another process, or another proxy baselined the tool first): judge the
        last seen definition against it again."""
        baseline = self.store.get(name)
        if baseline is None:
            return None
        current = self._current.get(name)
        if current is None:
            self._facts.pop(name, None)  # not seen here yet: facts follow the new baseline
            return None
        duplicate = DUPLICATE in self.facts(name).drifted_aspects
        return self._judge(
            name, baseline, current, duplicate=duplicate, resolved="tool_drift_accepted", persist=True
        )

    def _judge(
        self,
        name: str,
        baseline: ToolBaseline,
        current: ToolBaseline,
        *,
        duplicate: bool,
        resolved: DriftKind,
        persist: bool = False,
    ) -> DriftEvent | None:
        """Set the tool's facts from ``current`` against ``baseline``; persist and report a change
        (``persist``: store the drift even when it did not change, as judged against a new baseline)."""
        before = self.facts(name).drifted_aspects
        before_current = self._current.get(name)
        self._current[name] = current
        aspects: tuple[str, ...] = ()
        if current.fingerprint != baseline.fingerprint:
            aspects = drifted_aspects(baseline.definition, current.definition)
        if duplicate:
            aspects = (*aspects, DUPLICATE)
        self._facts[name] = _facts_of(baseline, current, aspects)
        moved = before_current is None or before_current.fingerprint != current.fingerprint
        changed = aspects != before or bool(aspects and moved)
        if changed or persist:
            self.store.set_pending(name, PendingDrift(current, aspects) if aspects else None)
        if not changed:
            return None
        if aspects:
            return DriftEvent("tool_drift", name, aspects, baseline.fingerprint, current.fingerprint)
        accepted_by = baseline.accepted_by if resolved == "tool_drift_accepted" else None
        return DriftEvent(resolved, name, (), baseline.fingerprint, current.fingerprint, accepted_by)

    def accept(self, name: str, *, accepted_by: str | None = None) -> ToolBaseline:
        """Make the tool's current (drifted) definition its baseline and return it; a tool that is
        not drifted keeps its baseline (returned). Raise ``KeyError`` for an unknown tool."""
        baseline = self.store.get(name)
        if baseline is None:
            raise KeyError(name)
        current = self._current.get(name)
        if current is None or not self.facts(name).drifted:
            return baseline
        accepted = ToolBaseline(current.name, current.definition, current.fingerprint, accepted_by)
        self.store.accept(accepted)
        self._facts[name] = ToolFacts(hints=accepted.hints, known=True)
        return accepted


def _facts_of(baseline: ToolBaseline, current: ToolBaseline, aspects: tuple[str, ...]) -> ToolFacts:
    if not aspects:
        return ToolFacts(hints=baseline.hints, known=True)
    return ToolFacts(hints=baseline.hints, known=True, drifted_aspects=aspects, current_hints=current.hints)
