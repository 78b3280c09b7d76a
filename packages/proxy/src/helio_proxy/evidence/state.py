"""One session's governance state and the rules every store applies to it.

:class:`SessionState` holds what a session has (evidence, expired keys, context, completed calls,
declared dependencies) and applies each write under :class:`StoreLimits`, whichever store keeps
it: the in-memory store holds one per session, the store-backed one reads it from its row,
applies the write, and writes it back in the same transaction. Both therefore expire, cap, trim
and verify identically. :meth:`SessionState.to_json` / :meth:`SessionState.from_json` are the
row's format.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from helio_proxy.evidence.model import CallHistory, CompletedCall, EvidenceEntry, SessionSnapshot
from helio_proxy.evidence.store import StoreCapacityError, StoreLimits

STATE_FORMAT: Final = 2
"""Version of the JSON document :meth:`SessionState.to_json` writes. Version 1 held the completed
calls too; version 2 leaves them to the store's ``session_history`` table (see
:mod:`helio_proxy.evidence.sql`). :meth:`SessionState.from_json` reads both."""

COMPACT_AFTER: Final = 64
"""Trimmed calls a session's list holds before it is compacted (see :attr:`SessionState.calls`): a
copy of the kept calls every 64 calls, so that no more than 64 calls are held past their time."""


def encode_json(value: Any) -> str:
    """``value`` as the stored state writes it: compact JSON (anything JSON lacks as its ``str``)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def encoded_size(value: Any) -> int:
    """Bytes ``value`` takes as compact JSON: what the byte caps count."""
    return len(encode_json(value).encode())


def _note_last(last_calls: dict[str, tuple[str, str | None]], call: CompletedCall) -> None:
    """``call`` is now its tool's latest (and, if it succeeded, its latest successful) call."""
    previous = last_calls.get(call.tool_name)
    ok = call.call_id if call.succeeded else (previous[1] if previous is not None else None)
    last_calls[call.tool_name] = (call.call_id, ok)


Room = Callable[[], int]
"""How many more bytes all sessions together may take (asked only when a write grows one)."""


@dataclass
class SessionState:
    """A session's state (see the module doc). Methods mutate it in place."""

    last_write_ms: int
    evidence: dict[str, EvidenceEntry] = field(default_factory=dict[str, EvidenceEntry])
    expired: dict[str, str] = field(default_factory=dict[str, str])
    context: dict[str, Any] = field(default_factory=dict[str, Any])
    calls: list[CompletedCall] = field(default_factory=list[CompletedCall])
    """Completed calls, oldest first, from :attr:`first` on: only ever appended to, so a snapshot
    shares it (:class:`CallHistory`); trimming moves :attr:`first`, and compacting replaces the list."""
    first: int = 0
    """Index in :attr:`calls` of the oldest call kept."""
    calls_by_id: dict[str, CompletedCall] = field(default_factory=dict[str, CompletedCall])
    succeeded: frozenset[str] = frozenset()
    """Replaced, never changed in place, so snapshots share it (a tool is new to a session rarely)."""
    called: frozenset[str] = frozenset()
    dependencies: dict[str, list[str]] = field(default_factory=dict[str, list[str]])
    last_calls: dict[str, tuple[str, str | None]] = field(default_factory=dict[str, tuple[str, str | None]])
    """Per tool: the id of its latest call and of its latest successful one (what a met
    prerequisite names in the audit record), kept whatever the history's length."""
    recorded: int = 0
    """Calls recorded in the session so far: the next call's sequence number (its
    ``session_history`` row's ``seq`` in the store-backed state)."""
    sizes: dict[tuple[str, str], int] = field(default_factory=dict[tuple[str, str], int])
    """Encoded size of each evidence (``("e", key)``) and context (``("c", key)``) value."""

    @property
    def bytes(self) -> int:
        return sum(self.sizes.values())

    def live_until(self, idle_ms: int) -> int:
        """The first millisecond at which a sweep may drop the session: no live evidence left and
        no write for ``idle_ms``."""
        latest = max((entry.expires_at for entry in self.evidence.values()), default=0)
        return max(latest, self.last_write_ms + idle_ms)

    def next_expiry(self) -> int | None:
        """When the earliest live evidence expires (``None``: none held)."""
        return min((entry.expires_at for entry in self.evidence.values()), default=None)

    # -- writes ------------------------------------------------------------------------------

    def put_evidence(
        self,
        limits: StoreLimits,
        room: Room,
        *,
        tool_name: str,
        evidence_key: str,
        data: Any,
        ttl_seconds: float,
        call_id: str | None,
    ) -> EvidenceEntry:
        call = self.calls_by_id.get(call_id) if call_id is not None else None
        verified = call is not None and call.tool_name == tool_name and call.succeeded
        return self._put(
            limits, room, evidence_key, data, tool_name, ttl_seconds, call_id, verified, False, call
        )

    def record_produced(
        self,
        limits: StoreLimits,
        room: Room,
        *,
        evidence_key: str,
        call_id: str,
        result_digest: str,
        ttl_seconds: float,
        tool_name: str,
        arguments: Any,
    ) -> EvidenceEntry:
        data = {"result_digest": result_digest}
        source = CompletedCall(tool_name, self.last_write_ms, True, call_id, arguments)
        return self._put(
            limits, room, evidence_key, data, tool_name, ttl_seconds, call_id, True, True, source
        )

    def record_call(
        self, limits: StoreLimits, tool_name: str, call_id: str, succeeded: bool, arguments: Any
    ) -> CompletedCall:
        if tool_name not in self.called and len(self.called) >= limits.max_tools_per_session:
            raise StoreCapacityError("max_tools_per_session", limits.max_tools_per_session)
        call = CompletedCall(tool_name, self.last_write_ms, succeeded, call_id, arguments)
        self._keep(call, limits.max_calls_kept)
        self.recorded += 1
        _note_last(self.last_calls, call)
        if tool_name not in self.called:
            self.called = self.called | {tool_name}
        if succeeded and tool_name not in self.succeeded:
            self.succeeded = self.succeeded | {tool_name}
        return call

    def _keep(self, call: CompletedCall, most: int) -> None:
        """Append ``call``; drop the oldest beyond ``most``."""
        calls, by_id, first = self.calls, self.calls_by_id, self.first
        calls.append(call)
        by_id[call.call_id] = call
        while len(calls) - first > most:
            dropped = calls[first]
            first += 1
            if by_id.get(dropped.call_id) is dropped:
                del by_id[dropped.call_id]
        if first >= COMPACT_AFTER:
            # A new list: snapshots taken so far keep viewing the old one.
            self.calls = calls[first:]
            first = 0
        self.first = first

    def kept_calls(self) -> CallHistory:
        """The calls kept, oldest first (a view: see :attr:`calls`)."""
        return CallHistory(self.calls, self.first)

    def put_context(self, limits: StoreLimits, room: Room, key: str, value: Any) -> int:
        """Set a context value; returns how many bytes the session grew by (may be negative)."""
        if key not in self.context:
            _check_keys(limits, len(self.context))
        growth = self._resize(limits, room, ("c", key), encoded_size(value))
        self.context[key] = value
        return growth

    def add_dependencies(self, limits: StoreLimits, tool_name: str, requires: Sequence[str]) -> None:
        known = self.dependencies.get(tool_name)
        if known is None:
            _check_keys(limits, len(self.dependencies))
            known = self.dependencies[tool_name] = []
        added = [name for name in dict.fromkeys(requires) if name not in known]
        if len(known) + len(added) > limits.max_keys_per_session:
            raise StoreCapacityError("max_keys_per_session", limits.max_keys_per_session)
        known.extend(added)

    def expire(self, now_ms: int) -> int:
        """Move evidence whose TTL ran out aside; returns the bytes freed."""
        freed = 0
        for key, entry in list(self.evidence.items()):
            if not entry.live(now_ms):
                del self.evidence[key]
                self.expired[key] = entry.tool_name
                freed += self.sizes.pop(("e", key), 0)
        return freed

    # -- reads -------------------------------------------------------------------------------

    def snapshot(self, session_id: str, now_ms: int) -> SessionSnapshot:
        """The snapshot at ``now_ms`` (evidence expired by then listed as expired; self unchanged)."""
        evidence = {key: entry for key, entry in self.evidence.items() if entry.live(now_ms)}
        expired = dict(self.expired)
        for key, entry in self.evidence.items():
            if key not in evidence:
                expired[key] = entry.tool_name
        return SessionSnapshot(
            session_id=session_id,
            evidence=evidence,
            expired=expired,
            context=dict(self.context),
            completed_tools=self.kept_calls(),
            succeeded_tools=self.succeeded,
            called_tools=self.called,
            dependencies={tool: tuple(names) for tool, names in self.dependencies.items()},
            last_call_ids=dict(self.last_calls),
        )

    # -- the stored form ---------------------------------------------------------------------

    def to_json(self) -> str:
        """The ``session_state`` row's document (format 2: without the calls, which the store keeps
        as ``session_history`` rows)."""
        document = {
            "format": STATE_FORMAT,
            "last_write_ms": self.last_write_ms,
            "evidence": [
                _entry_json(entry, self.sizes.get(("e", key), 0)) for key, entry in self.evidence.items()
            ],
            "expired": self.expired,
            "context": [[key, value, self.sizes.get(("c", key), 0)] for key, value in self.context.items()],
            "last_calls": self.last_calls,
            "recorded": self.recorded,
            "succeeded": sorted(self.succeeded),
            "called": sorted(self.called),
            "dependencies": self.dependencies,
        }
        return encode_json(document)

    @classmethod
    def from_json(cls, text: str) -> SessionState:
        """The state a document holds: without its calls (format 2), or with the calls a format-1
        document still carries (:attr:`calls`; the store moves them to ``session_history`` on the
        session's next write)."""
        document = cast(dict[str, Any], json.loads(text))
        state = cls(last_write_ms=int(document["last_write_ms"]))
        for item in cast(list[dict[str, Any]], document["evidence"]):
            entry = EvidenceEntry(
                item["key"],
                item["data"],
                item["tool"],
                item["at"],
                item["expires_at"],
                item["verified"],
                item["call_id"],
                item["produced"],
                source_tool=item["source_tool"],
                source_arguments=item["source_arguments"],
                source_succeeded=item["source_succeeded"],
            )
            state.evidence[entry.evidence_key] = entry
            state.sizes[("e", entry.evidence_key)] = int(item["size"])
        state.expired = dict(cast(dict[str, str], document["expired"]))
        for key, value, size in cast(list[list[Any]], document["context"]):
            state.context[key] = value
            state.sizes[("c", key)] = int(size)
        if "calls" in document:  # format 1
            for tool_name, timestamp, succeeded, call_id, arguments in cast(
                list[list[Any]], document["calls"]
            ):
                call = CompletedCall(tool_name, timestamp, succeeded, call_id, arguments)
                state.calls.append(call)
                state.calls_by_id[call_id] = call
                _note_last(state.last_calls, call)
            state.recorded = len(state.calls)
        else:
            last = cast(dict[str, list[str | None]], document["last_calls"])
            state.last_calls = {tool: (str(ids[0]), ids[1]) for tool, ids in last.items()}
            state.recorded = int(document["recorded"])
        state.succeeded = frozenset(cast(list[str], document["succeeded"]))
        state.called = frozenset(cast(list[str], document["called"]))
        state.dependencies = {
            tool: list(names) for tool, names in cast(dict[str, list[str]], document["dependencies"]).items()
        }
        return state

    # -- internals ---------------------------------------------------------------------------

    def _put(
        self,
        limits: StoreLimits,
        room: Room,
        key: str,
        data: Any,
        tool_name: str,
        ttl_seconds: float,
        call_id: str | None,
        verified: bool,
        produced: bool,
        source: CompletedCall | None,
    ) -> EvidenceEntry:
        now = self.last_write_ms
        if key not in self.evidence and key not in self.expired:
            _check_keys(limits, len(self.evidence) + len(self.expired))
        self._resize(limits, room, ("e", key), encoded_size(data))
        entry = EvidenceEntry(
            key,
            data,
            tool_name,
            now,
            now + int(ttl_seconds * 1000),
            verified,
            call_id,
            produced,
            source_tool=source.tool_name if source is not None else None,
            source_arguments=source.arguments if source is not None else None,
            source_succeeded=source.succeeded if source is not None else False,
        )
        self.evidence[key] = entry
        self.expired.pop(key, None)
        return entry

    def _resize(self, limits: StoreLimits, room: Room, slot: tuple[str, str], size: int) -> int:
        """Account for a value replacing ``slot``, or refuse it when a byte cap would be passed;
        returns the growth."""
        growth = size - self.sizes.get(slot, 0)
        if growth > 0 and self.bytes + growth > limits.max_session_bytes:
            raise StoreCapacityError("max_session_bytes", limits.max_session_bytes)
        if growth > 0 and growth > room():
            raise StoreCapacityError("max_total_bytes", limits.max_total_bytes)
        self.sizes[slot] = size
        return growth


def _entry_json(entry: EvidenceEntry, size: int) -> dict[str, Any]:
    return {
        "key": entry.evidence_key,
        "data": entry.data,
        "tool": entry.tool_name,
        "at": entry.timestamp,
        "expires_at": entry.expires_at,
        "verified": entry.verified,
        "call_id": entry.call_id,
        "produced": entry.produced,
        "source_tool": entry.source_tool,
        "source_arguments": entry.source_arguments,
        "source_succeeded": entry.source_succeeded,
        "size": size,
    }


def _check_keys(limits: StoreLimits, count: int) -> None:
    if count >= limits.max_keys_per_session:
        raise StoreCapacityError("max_keys_per_session", limits.max_keys_per_session)
