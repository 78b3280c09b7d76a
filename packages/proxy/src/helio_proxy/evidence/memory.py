"""The default session store: plain dicts in the proxy's memory, bounded by :class:`StoreLimits`.

Expiry is lazy (a snapshot moves expired evidence aside) plus a periodic :meth:`sweep`, which
also drops sessions that hold no live evidence and have seen no write for ``idle_seconds``.
Nothing here awaits, so every method runs atomically on the event loop. The per-session rules
(caps, verification, trimming) are :class:`~helio_proxy.evidence.state.SessionState`'s, shared
with the store-backed :class:`~helio_proxy.evidence.sql.SqlSessionStore`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from helio_proxy.evidence.model import Clock, CompletedCall, EvidenceEntry, SessionSnapshot, to_ms
from helio_proxy.evidence.state import SessionState, encoded_size
from helio_proxy.evidence.store import DEFAULT_LIMITS, StoreCapacityError, StoreLimits

__all__ = ["InMemorySessionStore", "encoded_size"]

T = TypeVar("T")


class InMemorySessionStore:
    """:class:`~helio_proxy.evidence.store.SessionStore` held in this process."""

    def __init__(self, *, clock: Clock = time.time, limits: StoreLimits = DEFAULT_LIMITS) -> None:
        self._clock = clock
        self.limits = limits
        self._sessions: dict[str, SessionState] = {}
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
        return self._write(
            session_id,
            lambda state: state.put_evidence(
                self.limits,
                self._room,
                tool_name=tool_name,
                evidence_key=evidence_key,
                data=data,
                ttl_seconds=ttl_seconds,
                call_id=call_id,
            ),
        )

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
        return self._write(
            session_id,
            lambda state: state.record_produced(
                self.limits,
                self._room,
                evidence_key=evidence_key,
                call_id=call_id,
                result_digest=result_digest,
                ttl_seconds=ttl_seconds,
                tool_name=tool_name,
                arguments=arguments,
            ),
        )

    async def record_call(
        self, session_id: str, tool_name: str, call_id: str, succeeded: bool, *, arguments: Any = None
    ) -> CompletedCall:
        return self._write(
            session_id, lambda state: state.record_call(self.limits, tool_name, call_id, succeeded, arguments)
        )

    async def put_context(self, session_id: str, key: str, value: Any) -> None:
        self._write(session_id, lambda state: state.put_context(self.limits, self._room, key, value))

    async def add_dependencies(self, session_id: str, tool_name: str, requires: Sequence[str]) -> None:
        self._write(session_id, lambda state: state.add_dependencies(self.limits, tool_name, requires))

    # -- reads and housekeeping --------------------------------------------------------------

    async def snapshot(self, session_id: str, *, history: bool = True) -> SessionSnapshot:
        # ``history`` changes nothing here: the calls are a view of the session's list (O(1)).
        state = self._sessions.get(session_id)
        if state is None:
            return SessionSnapshot(session_id)
        self._total_bytes -= state.expire(self.now_ms())
        return state.snapshot(session_id, self.now_ms())

    async def sweep(self) -> int:
        return self._sweep(self.now_ms())

    # -- internals ---------------------------------------------------------------------------

    def _room(self) -> int:
        return self.limits.max_total_bytes - self._total_bytes

    def _write(self, session_id: str, change: Callable[[SessionState], T]) -> T:
        state = self._writable(session_id)
        before = state.bytes
        try:
            return change(state)
        finally:
            self._total_bytes += state.bytes - before

    def _sweep(self, now: int) -> int:
        idle_ms = int(self.limits.idle_seconds * 1000)
        dropped = 0
        for session_id, state in list(self._sessions.items()):
            self._total_bytes -= state.expire(now)
            if state.live_until(idle_ms) <= now:
                self._total_bytes -= state.bytes
                del self._sessions[session_id]
                dropped += 1
        return dropped

    def _writable(self, session_id: str) -> SessionState:
        now = self.now_ms()
        state = self._sessions.get(session_id)
        if state is None:
            if len(self._sessions) >= self.limits.max_sessions:
                self._sweep(now)
            if len(self._sessions) >= self.limits.max_sessions:
                raise StoreCapacityError("max_sessions", self.limits.max_sessions)
            state = self._sessions[session_id] = SessionState(last_write_ms=now)
        state.last_write_ms = now
        self._total_bytes -= state.expire(now)
        return state
