"""The session state store contract, its size caps and the error raised at a cap.

Everything the proxy keeps per session lives behind :class:`SessionStore`: SDK-marked and
proxy-produced evidence, completed tool calls, SDK-declared dependencies and context. The
in-memory store (:mod:`helio_proxy.evidence.memory`) is the default; the store-backed one
(:mod:`helio_proxy.evidence.sql`, ``store.session_state``) keeps the same state in the governance
database so restarts, replicas and ``helio policy test --session`` see it. Methods are coroutines
for that reason, although the in-memory store never awaits (each call is atomic on the event loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

from helio_proxy.errors import HelioProxyError
from helio_proxy.evidence.model import CompletedCall, EvidenceEntry, SessionSnapshot

DEFAULT_TTL_SECONDS: Final = 300
"""Lifetime of SDK-marked evidence when the request gives none."""

MAX_TTL_SECONDS: Final = 86_400
"""Longest evidence lifetime accepted from the SDK (one day)."""


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Caps that bound the store's memory whatever the SDK sends. Past one, writes fail with
    :class:`StoreCapacityError` (HTTP 503 on the sideband); history is trimmed instead."""

    max_sessions: int = 10_000
    """Sessions held at once (idle and expired ones are swept before refusing)."""
    max_keys_per_session: int = 256
    """Evidence keys, context keys and tools with declared dependencies, each, per session."""
    max_tools_per_session: int = 1_024
    """Distinct tool names whose calls a session remembers."""
    max_calls_kept: int = 1_000
    """Completed calls listed per session; older ones are dropped (success stays remembered per tool)."""
    max_session_bytes: int = 4 << 20
    """Encoded size of one session's evidence data and context values."""
    max_total_bytes: int = 256 << 20
    """Encoded size of all sessions' evidence data and context values."""
    idle_seconds: float = 3_600
    """A session with no live evidence and no write for this long is dropped."""


DEFAULT_LIMITS: Final = StoreLimits()


class StoreCapacityError(HelioProxyError):
    """A write would exceed one of :class:`StoreLimits` (``limit`` names it)."""

    status: ClassVar[int] = 503
    code: ClassVar[str] = "capacity_exhausted"

    def __init__(self, limit: str, value: int) -> None:
        super().__init__(f"session store is full: {limit} ({value}) reached")
        self.limit = limit
        self.value = value


class SessionStore(Protocol):
    """Per-session governance state. Ids are compared exactly (never trimmed or folded)."""

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
        """Store (or replace) SDK-marked evidence.

        It is ``verified`` only when ``call_id`` names a call of ``tool_name`` recorded in this
        session with :meth:`record_call` that succeeded. Whatever call ``call_id`` names, its tool,
        arguments and outcome are kept on the entry (``source_*``) for rule bindings.
        """
        ...

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
        """Store evidence the proxy saw itself (a rule's ``evidence.produces``); always verified.

        ``data`` is ``{"result_digest": result_digest}``: the proxy keeps a digest of the tool's
        result, not the result.
        """
        ...

    async def record_call(
        self, session_id: str, tool_name: str, call_id: str, succeeded: bool, *, arguments: Any = None
    ) -> CompletedCall:
        """Remember a forwarded ``tools/call``, its arguments and whether it succeeded."""
        ...

    async def put_context(self, session_id: str, key: str, value: Any) -> None:
        """Set one context value."""
        ...

    async def add_dependencies(self, session_id: str, tool_name: str, requires: Sequence[str]) -> None:
        """Add SDK-declared prerequisites of ``tool_name``; earlier ones are kept (they only grow)."""
        ...

    async def snapshot(self, session_id: str, *, history: bool = True) -> SessionSnapshot:
        """The session now (an empty snapshot for an unknown id); expired evidence is moved aside.

        ``history=False``: the gate check's snapshot, which a store may leave without
        ``completed_tools`` when listing them costs more than the rest (the store-backed one
        reads them from their own table); the gates read ``last_call_ids``."""
        ...

    async def sweep(self) -> int:
        """Expire evidence and drop idle sessions; returns how many sessions were dropped."""
        ...
