"""The store-backed session store: each session's state is one row of the governance store.

A row of ``session_state`` holds a session's :class:`~helio_proxy.evidence.state.SessionState` as
a JSON document, all but its completed calls, so a governed call's gate check
(:meth:`SqlSessionStore.snapshot` with ``history=False``) is one primary-key read, on SQLite and
PostgreSQL alike. The calls are rows of ``session_history``, one per call (``seq`` counting the
session's calls); a snapshot that lists them (the console, the sideband, ``helio policy test``)
reads them too. A write is one job of the store's writer: it reads the row (``SELECT ... FOR
UPDATE`` on PostgreSQL, so replicas on one database take turns on a session; SQLite's writer
already holds the file's write lock), applies the change under the same
:class:`~helio_proxy.evidence.store.StoreLimits` as the in-memory store, writes the row back and
inserts the calls it recorded, deleting those past the kept history, in the same transaction.
Neither the read nor the write grows with the session's history: the document held the calls
until the thirteenth look of docs/performance.md, and a session's 1,000th call then cost
milliseconds more than its first. A document written before then still holds its calls; its
session's next write moves them to ``session_history``.

Because the state outlives the process, a restarted proxy, another replica, and ``helio policy
test --session`` all see the session's evidence and call history.

Caps: ``max_sessions`` counts rows not yet past ``live_until_ms`` (expired rows are pruned
before a new session is refused); ``max_total_bytes`` sums the ``bytes`` column, read only when a
write grows a session. :meth:`SqlSessionStore.sweep` deletes the rows a sweep of the in-memory
store would drop (no live evidence and idle for ``idle_seconds``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from helio_proxy.evidence.model import Clock, CompletedCall, EvidenceEntry, SessionSnapshot, to_ms
from helio_proxy.evidence.state import SessionState, encode_json
from helio_proxy.evidence.store import DEFAULT_LIMITS, StoreCapacityError, StoreLimits
from helio_proxy.store.base import Store
from helio_proxy.store.tables import SESSION_HISTORY, SESSION_STATE

T = TypeVar("T")

_C = SESSION_STATE.c
_H = SESSION_HISTORY.c


class SqlSessionStore:
    """:class:`~helio_proxy.evidence.store.SessionStore` kept in a :class:`~helio_proxy.store.Store`
    (which must be open before the first call)."""

    def __init__(
        self, store: Store, *, clock: Clock = time.time, limits: StoreLimits = DEFAULT_LIMITS
    ) -> None:
        self.store = store
        self._clock = clock
        self.limits = limits

    def now_ms(self) -> int:
        return to_ms(self._clock())

    @property
    def session_count(self) -> int:
        """Rows a sweep would keep now (a blocking read: for tests and the CLI)."""
        now = self.now_ms()
        return self.store.read_sync(
            lambda conn: int(
                conn.execute(
                    select(func.count()).select_from(SESSION_STATE).where(_C.live_until_ms > now)
                ).scalar_one()
            )
        )

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
        return await self._write(
            session_id,
            lambda state, room: state.put_evidence(
                self.limits,
                room,
                tool_name=tool_name,
                evidence_key=evidence_key,
                data=data,
                ttl_seconds=ttl_seconds,
                call_id=call_id,
            ),
            bound=call_id,
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
        return await self._write(
            session_id,
            lambda state, room: state.record_produced(
                self.limits,
                room,
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
        return await self._write(
            session_id,
            lambda state, _room: state.record_call(self.limits, tool_name, call_id, succeeded, arguments),
        )

    async def put_context(self, session_id: str, key: str, value: Any) -> None:
        await self._write(session_id, lambda state, room: state.put_context(self.limits, room, key, value))

    async def add_dependencies(self, session_id: str, tool_name: str, requires: Sequence[str]) -> None:
        await self._write(
            session_id, lambda state, _room: state.add_dependencies(self.limits, tool_name, requires)
        )

    # -- reads and housekeeping --------------------------------------------------------------

    async def snapshot(self, session_id: str, *, history: bool = True) -> SessionSnapshot:
        return await self.store.read(self.snapshot_job(session_id, history=history))

    def snapshot_job(
        self, session_id: str, *, history: bool = True
    ) -> Callable[[Connection], SessionSnapshot]:
        """The read :meth:`snapshot` runs (one primary-key ``SELECT``, and the session's
        ``session_history`` rows with ``history``); ``read_sync`` it from the CLI."""
        kept = self.limits.max_calls_kept

        def job(conn: Connection) -> SessionSnapshot:
            text = conn.execute(select(_C.state).where(_C.session_id == session_id)).scalar_one_or_none()
            if text is None:
                return SessionSnapshot(session_id)
            state = SessionState.from_json(text)
            if history and not state.calls:  # a format-1 document carries its calls itself
                state.calls = _history(conn, session_id, since=state.recorded - kept)
            return state.snapshot(session_id, self.now_ms())

        return job

    async def sweep(self) -> int:
        now = self.now_ms()
        limits = self.limits

        def job(conn: Connection) -> int:
            dropped = _prune(conn, now)
            # Sessions that stay but hold evidence past its TTL: expire it, so its bytes are freed.
            stale = conn.execute(
                select(_C.session_id, _C.state).where(_C.next_expiry_ms <= now).with_for_update()
            ).all()
            for session_id, text in stale:
                state = SessionState.from_json(text)
                state.expire(now)
                _save(conn, session_id, state, limits)
            return dropped

        return await self.store.write(job)

    # -- internals ---------------------------------------------------------------------------

    async def _write(
        self,
        session_id: str,
        change: Callable[[SessionState, Callable[[], int]], T],
        *,
        bound: str | None = None,
    ) -> T:
        """Apply ``change`` to the session's state in one transaction (``bound``: the id of a call
        the change looks up, read from ``session_history`` first)."""
        now = self.now_ms()
        limits = self.limits

        def job(conn: Connection) -> T:
            state = _load_for_update(conn, session_id)
            if state is None:
                _admit(conn, limits, now)
                # Another replica may create the row meanwhile: then this waits for its commit
                # and works on what it wrote.
                conn.execute(
                    _insert(conn)
                    .values(session_id=session_id, state="", bytes=0, last_write_ms=now, live_until_ms=now)
                    .on_conflict_do_nothing(index_elements=[_C.session_id])
                )
                state = _load_for_update(conn, session_id) or SessionState(last_write_ms=now)
            state.last_write_ms = now
            state.expire(now)
            if bound is not None and bound not in state.calls_by_id:
                found = _call(conn, session_id, bound, since=state.recorded - limits.max_calls_kept)
                if found is not None:
                    state.calls_by_id[bound] = found  # looked up only: not a call to insert
            current = state

            def room() -> int:
                others = conn.execute(
                    select(func.coalesce(func.sum(_C.bytes), 0)).where(_C.session_id != session_id)
                ).scalar_one()
                return limits.max_total_bytes - int(others) - current.bytes

            result = change(state, room)
            _save(conn, session_id, state, limits)
            return result

        return await self.store.write(job)


def _load_for_update(conn: Connection, session_id: str) -> SessionState | None:
    """The session's state with its row locked (PostgreSQL); ``None`` when it has no row yet
    (or a row just created empty)."""
    text = conn.execute(
        select(_C.state).where(_C.session_id == session_id).with_for_update()
    ).scalar_one_or_none()
    return SessionState.from_json(text) if text else None


def _insert(conn: Connection) -> Any:
    """The dialect's ``INSERT`` (both have ``on_conflict_do_nothing``)."""
    return (
        postgresql_insert(SESSION_STATE)
        if conn.dialect.name == "postgresql"
        else sqlite_insert(SESSION_STATE)
    )


_CALL_COLUMNS = (_H.tool_name, _H.at_ms, _H.succeeded, _H.call_id, _H.arguments)
"""A ``session_history`` row's columns in :func:`_completed`'s order."""


def _history(conn: Connection, session_id: str, *, since: int) -> list[CompletedCall]:
    """The session's kept calls, oldest first (``seq`` from ``since`` on)."""
    rows = conn.execute(
        select(*_CALL_COLUMNS).where(_H.session_id == session_id, _H.seq >= since).order_by(_H.seq)
    )
    return [_completed(*row) for row in rows]


def _call(conn: Connection, session_id: str, call_id: str, *, since: int) -> CompletedCall | None:
    """The kept call ``call_id`` of the session (its latest, were an id reused)."""
    row = conn.execute(
        select(*_CALL_COLUMNS)
        .where(_H.session_id == session_id, _H.call_id == call_id, _H.seq >= since)
        .order_by(_H.seq.desc())
        .limit(1)
    ).first()
    return _completed(*row) if row is not None else None


def _completed(
    tool_name: str, at_ms: int, succeeded: bool, call_id: str, arguments: str | None
) -> CompletedCall:
    return CompletedCall(
        tool_name,
        int(at_ms),
        bool(succeeded),
        call_id,
        json.loads(arguments) if arguments is not None else None,
    )


def _save(conn: Connection, session_id: str, state: SessionState, limits: StoreLimits) -> None:
    """Write the session's row back, insert the calls the job recorded (every call a loaded state
    holds: a format-2 document holds none, a format-1 one moves its own here) and delete the calls
    past the kept history."""
    unsaved = state.kept_calls()
    if len(unsaved):
        first = state.recorded - len(unsaved)
        conn.execute(
            insert(SESSION_HISTORY),
            [
                {
                    "session_id": session_id,
                    "seq": first + offset,
                    "call_id": call.call_id,
                    "tool_name": call.tool_name,
                    "at_ms": call.timestamp,
                    "succeeded": call.succeeded,
                    "arguments": None if call.arguments is None else encode_json(call.arguments),
                }
                for offset, call in enumerate(unsaved)
            ],
        )
        oldest_kept = state.recorded - limits.max_calls_kept
        if oldest_kept > 0:  # a session within its kept history has nothing to delete
            conn.execute(delete(SESSION_HISTORY).where(_H.session_id == session_id, _H.seq < oldest_kept))
    conn.execute(
        update(SESSION_STATE)
        .where(_C.session_id == session_id)
        .values(
            state=state.to_json(),
            bytes=state.bytes,
            last_write_ms=state.last_write_ms,
            live_until_ms=state.live_until(int(limits.idle_seconds * 1000)),
            next_expiry_ms=state.next_expiry(),
        )
    )


def _admit(conn: Connection, limits: StoreLimits, now: int) -> None:
    """Refuse a new session past ``max_sessions``, after pruning the rows a sweep would drop."""
    count = select(func.count()).select_from(SESSION_STATE)
    if int(conn.execute(count).scalar_one()) < limits.max_sessions:
        return
    _prune(conn, now)
    if int(conn.execute(count).scalar_one()) >= limits.max_sessions:
        raise StoreCapacityError("max_sessions", limits.max_sessions)


def _prune(conn: Connection, now: int) -> int:
    """Delete sessions with no live evidence that have been idle long enough, and their calls;
    returns how many. (The sessions' rows go first: a write to one of them meanwhile either waits
    for this transaction and starts the session afresh, or has made it live again.)"""
    dropped = [
        str(session_id)
        for (session_id,) in conn.execute(
            delete(SESSION_STATE).where(_C.live_until_ms <= now).returning(_C.session_id)
        )
    ]
    for start in range(0, len(dropped), _PRUNE_CHUNK):
        conn.execute(delete(SESSION_HISTORY).where(_H.session_id.in_(dropped[start : start + _PRUNE_CHUNK])))
    return len(dropped)


_PRUNE_CHUNK = 500
"""Sessions whose calls one ``DELETE`` removes (a bound on the statement's parameters)."""
