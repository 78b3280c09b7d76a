"""The default session store: plain dicts in the proxy's memory, bounded by :class:`StoreLimits`.

Expiry is lazy (a snapshot moves expired evidence aside) plus a periodic :meth:`sweep`, which
also drops sessions that hold no live evidence and have seen no write for ``idle_seconds``.
Nothing here awaits, so every method runs atomically on the event loop.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from helio_proxy.evidence.model import Clock, CompletedCall, EvidenceEntry, SessionSnapshot, to_ms
from helio_proxy.evidence.store import DEFAULT_LIMITS, StoreCapacityError, StoreLimits


def encoded_size(value: Any) -> int:
    """Bytes ``value`` takes as compact JSON: what the byte caps count."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


@dataclass
class _Session:
    last_write_ms: int
    evidence: dict[str, EvidenceEntry] = field(default_factory=dict[str, EvidenceEntry])
    expired: dict[str, str] = field(default_factory=dict[str, str])
    context: dict[str, Any] = field(default_factory=dict[str, Any])
    calls: deque[CompletedCall] = field(default_factory=deque[CompletedCall])
    calls_by_id: dict[str, CompletedCall] = field(default_factory=dict[str, CompletedCall])
    succeeded: set[str] = field(default_factory=set[str])
    called: set[str] = field(default_factory=set[str])
    dependencies: dict[str, list[str]] = field(default_factory=dict[str, list[str]])
    sizes: dict[tuple[str, str], int] = field(default_factory=dict[tuple[str, str], int])
    """Encoded size of each evidence (``("e", key)``) and context (``("c", key)``) value."""

    @property
    def bytes(self) -> int:
        return sum(self.sizes.values())


class InMemorySessionStore:
    """:class:`~helio_proxy.evidence.store.SessionStore` held in this process."""

    def __init__(self, *, clock: Clock = time.time, limits: StoreLimits = DEFAULT_LIMITS) -> None:
        self._clock = clock
        self.limits = limits
        self._sessions: dict[str, _Session] = {}
        self._total_bytes = 0

    def now_ms(self) -> int:
        return to_ms(self._clock())

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # -- writes ------------------------------------------------------------------------------

    async def put_evidence(
        self,
        session_id: str,
        *,
        tool_name: str,
        evidence_key: str,
        data: Any,
        ttl_seconds: int,
        call_id: str | None = None,
    ) -> EvidenceEntry:
        session = self._writable(session_id)
        call = session.calls_by_id.get(call_id) if call_id is not None else None
        verified = call is not None and call.tool_name == tool_name and call.succeeded
        return self._put(session, evidence_key, data, tool_name, ttl_seconds, call_id, verified, False, call)

    async def record_produced(
        self,
        session_id: str,
        evidence_key: str,
        call_id: str,
        result_digest: str,
        ttl_seconds: float,
        tool_name: str,
        *,
        arguments: Any = None,
    ) -> EvidenceEntry:
        session = self._writable(session_id)
        data = {"result_digest": result_digest}
        source = CompletedCall(tool_name, session.last_write_ms, True, call_id, arguments)
        return self._put(session, evidence_key, data, tool_name, ttl_seconds, call_id, True, True, source)

    async def record_call(
        self, session_id: str, tool_name: str, call_id: str, succeeded: bool, *, arguments: Any = None
    ) -> CompletedCall:
        session = self._writable(session_id)
        if tool_name not in session.called and len(session.called) >= self.limits.max_tools_per_session:
            raise StoreCapacityError("max_tools_per_session", self.limits.max_tools_per_session)
        call = CompletedCall(tool_name, session.last_write_ms, succeeded, call_id, arguments)
        session.calls.append(call)
        session.calls_by_id[call_id] = call
        while len(session.calls) > self.limits.max_calls_kept:
            dropped = session.calls.popleft()
            if session.calls_by_id.get(dropped.call_id) is dropped:
                del session.calls_by_id[dropped.call_id]
        session.called.add(tool_name)
        if succeeded:
            session.succeeded.add(tool_name)
        return call

    async def put_context(self, session_id: str, key: str, value: Any) -> None:
        session = self._writable(session_id)
        if key not in session.context:
            self._check_keys(len(session.context))
        self._resize(session, ("c", key), encoded_size(value))
        session.context[key] = value

    async def add_dependencies(self, session_id: str, tool_name: str, requires: Sequence[str]) -> None:
        session = self._writable(session_id)
        known = session.dependencies.get(tool_name)
        if known is None:
            self._check_keys(len(session.dependencies))
            known = session.dependencies[tool_name] = []
        added = [name for name in dict.fromkeys(requires) if name not in known]
        if len(known) + len(added) > self.limits.max_keys_per_session:
            raise StoreCapacityError("max_keys_per_session", self.limits.max_keys_per_session)
        known.extend(added)

    # -- reads and housekeeping --------------------------------------------------------------

    async def snapshot(self, session_id: str) -> SessionSnapshot:
        session = self._sessions.get(session_id)
        if session is None:
            return SessionSnapshot(session_id)
        self._expire(session, self.now_ms())
        return SessionSnapshot(
            session_id=session_id,
            evidence=dict(session.evidence),
            expired=dict(session.expired),
            context=dict(session.context),
            completed_tools=tuple(session.calls),
            succeeded_tools=frozenset(session.succeeded),
            called_tools=frozenset(session.called),
            dependencies={tool: tuple(names) for tool, names in session.dependencies.items()},
        )

    async def sweep(self) -> int:
        return self._sweep(self.now_ms())

    # -- internals ---------------------------------------------------------------------------

    def _sweep(self, now: int) -> int:
        idle_before = now - int(self.limits.idle_seconds * 1000)
        dropped = 0
        for session_id, session in list(self._sessions.items()):
            self._expire(session, now)
            if not session.evidence and session.last_write_ms <= idle_before:
                self._total_bytes -= session.bytes
                del self._sessions[session_id]
                dropped += 1
        return dropped

    def _writable(self, session_id: str) -> _Session:
        now = self.now_ms()
        session = self._sessions.get(session_id)
        if session is None:
            if len(self._sessions) >= self.limits.max_sessions:
                self._sweep(now)
            if len(self._sessions) >= self.limits.max_sessions:
                raise StoreCapacityError("max_sessions", self.limits.max_sessions)
            session = self._sessions[session_id] = _Session(last_write_ms=now)
        session.last_write_ms = now
        return session

    def _put(
        self,
        session: _Session,
        key: str,
        data: Any,
        tool_name: str,
        ttl_seconds: float,
        call_id: str | None,
        verified: bool,
        produced: bool,
        source: CompletedCall | None = None,
    ) -> EvidenceEntry:
        now = session.last_write_ms
        if key not in session.evidence and key not in session.expired:
            self._check_keys(len(session.evidence) + len(session.expired))
        self._resize(session, ("e", key), encoded_size(data))
        expires_at = now + int(ttl_seconds * 1000)
        entry = EvidenceEntry(
            key,
            data,
            tool_name,
            now,
            expires_at,
            verified,
            call_id,
            produced,
            source_tool=source.tool_name if source is not None else None,
            source_arguments=source.arguments if source is not None else None,
            source_succeeded=source.succeeded if source is not None else False,
        )
        session.evidence[key] = entry
        session.expired.pop(key, None)
        return entry

    def _expire(self, session: _Session, now: int) -> None:
        for key, entry in list(session.evidence.items()):
            if not entry.live(now):
                del session.evidence[key]
                session.expired[key] = entry.tool_name
                self._total_bytes -= session.sizes.pop(("e", key), 0)

    def _check_keys(self, count: int) -> None:
        if count >= self.limits.max_keys_per_session:
            raise StoreCapacityError("max_keys_per_session", self.limits.max_keys_per_session)

    def _resize(self, session: _Session, slot: tuple[str, str], size: int) -> None:
        """Account for a value replacing ``slot``, or refuse it when a byte cap would be passed."""
        growth = size - session.sizes.get(slot, 0)
        if growth > 0 and session.bytes + growth > self.limits.max_session_bytes:
            raise StoreCapacityError("max_session_bytes", self.limits.max_session_bytes)
        if growth > 0 and self._total_bytes + growth > self.limits.max_total_bytes:
            raise StoreCapacityError("max_total_bytes", self.limits.max_total_bytes)
        session.sizes[slot] = size
        self._total_bytes += growth
