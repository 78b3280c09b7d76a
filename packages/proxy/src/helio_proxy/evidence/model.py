"""The values a session's state is made of, and the read-only snapshot the gate check reads.

Times are integer epoch milliseconds, as on the sideband wire; the clock the stores are given
returns epoch seconds (``time.time`` in production, a hand-moved clock in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, cast, overload

Clock = Callable[[], float]
"""Epoch seconds. Injected everywhere time matters, so tests move time instead of sleeping."""


def to_ms(seconds: float) -> int:
    """Epoch seconds to epoch milliseconds (truncated)."""
    return int(seconds * 1000)


@dataclass(frozen=True, slots=True)
class EvidenceEntry:
    """One piece of evidence held for a session under ``evidence_key``."""

    evidence_key: str
    data: Any
    tool_name: str
    """The tool whose output this is (as the SDK says, or the call the proxy saw)."""
    timestamp: int
    """When it was recorded (epoch ms)."""
    expires_at: int
    """First millisecond at which it no longer counts (epoch ms)."""
    verified: bool
    """Bound to a successful call the proxy forwarded in this session (see ``call_id``)."""
    call_id: str | None = None
    produced: bool = False
    """Recorded by the proxy itself through a rule's ``evidence.produces``."""
    source_tool: str | None = None
    """The tool of the forwarded call ``call_id`` names (``None`` when it names no call the proxy saw)."""
    source_arguments: Any = None
    """That call's arguments, which ``match`` bindings compare with the governed call's."""
    source_succeeded: bool = False
    """Whether that call succeeded (no JSON-RPC error, no ``isError: true``)."""

    @property
    def bound(self) -> bool:
        """Whether ``call_id`` names a call the proxy forwarded in this session."""
        return self.source_tool is not None

    def live(self, now_ms: int) -> bool:
        return now_ms < self.expires_at


@dataclass(frozen=True, slots=True)
class CompletedCall:
    """A ``tools/call`` the proxy forwarded in a session, and whether it succeeded.

    Success means no JSON-RPC error and no ``result.isError: true``.
    """

    tool_name: str
    timestamp: int
    succeeded: bool
    call_id: str
    arguments: Any = None
    """The call's arguments as forwarded (``None`` when it sent none)."""


class CallHistory(Sequence[CompletedCall]):
    """A session's most recent forwarded calls at one moment, oldest first: a read-only view of
    ``calls[start:stop]`` of the session state's list, which is only ever appended to (trimming
    moves ``start``; compacting makes a new list). Taking it costs the same whatever the history's
    length: a copy of 1,000 kept calls per governed call took 4 µs of the gate check's 6.5 µs."""

    __slots__ = ("_calls", "_start", "_stop")

    def __init__(self, calls: list[CompletedCall], start: int = 0, stop: int | None = None) -> None:
        self._calls = calls
        self._start = start
        self._stop = len(calls) if stop is None else stop

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: int) -> CompletedCall: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[CompletedCall, ...]: ...
    def __getitem__(self, index: int | slice) -> CompletedCall | tuple[CompletedCall, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        size = self._stop - self._start
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("call history index out of range")
        return self._calls[self._start + index]

    def __iter__(self) -> Iterator[CompletedCall]:
        return islice(self._calls, self._start, self._stop)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CallHistory | tuple):
            calls = cast("Sequence[object]", other)
            return len(self) == len(calls) and all(a == b for a, b in zip(self, calls, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"CallHistory({list(self)!r})"


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """A session's state at one moment, detached from the store."""

    session_id: str
    evidence: Mapping[str, EvidenceEntry] = field(default_factory=dict[str, EvidenceEntry])
    """Evidence that had not expired when the snapshot was taken."""
    expired: Mapping[str, str] = field(default_factory=dict[str, str])
    """Keys marked earlier whose evidence has expired since, with the tool that produced them."""
    context: Mapping[str, Any] = field(default_factory=dict[str, Any])
    completed_tools: Sequence[CompletedCall] = ()
    """The most recent forwarded calls, oldest first (a :class:`CallHistory` from a store). Left
    empty in a store-backed gate check's snapshot (``snapshot(..., history=False)``): the gates read
    :attr:`last_call_ids` instead."""
    succeeded_tools: frozenset[str] = frozenset()
    """Every tool that succeeded at least once in the session (sticky)."""
    called_tools: frozenset[str] = frozenset()
    """Every tool that was forwarded at least once, whatever the outcome."""
    dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict[str, tuple[str, ...]])
    """SDK-declared prerequisites per tool, in order of first declaration."""
    last_call_ids: Mapping[str, tuple[str, str | None]] = field(
        default_factory=dict[str, tuple[str, str | None]]
    )
    """Per tool called in the session: the id of its latest call, and of its latest successful call
    (``None`` if none succeeded), however long ago."""

    def last_call_id(self, tool: str, *, succeeded: bool) -> str | None:
        """The id of the session's latest call of ``tool`` (``succeeded``: of its latest successful
        one), ``None`` if there is none. A snapshot made without :attr:`last_call_ids` (by hand,
        in tests) is searched through :attr:`completed_tools` instead."""
        ids = self.last_call_ids.get(tool)
        if ids is not None:
            return ids[1] if succeeded else ids[0]
        for call in reversed(self.completed_tools):
            if call.tool_name == tool and (call.succeeded or not succeeded):
                return call.call_id
        return None
