"""What ``decide()`` is given: the call, the tool's known definition, and the session's state.

Everything here is an immutable value or a synchronous read-only view, so a decision is a pure
function of its inputs. Whatever needs I/O (the session's evidence in the store, the upstream's
``tools/list``) is fetched by the gateway first and handed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Hints:
    """A tool's behaviour hints with the MCP defaults filled in where the tool says nothing.

    The defaults are the cautious ones (destructive, not read-only, open-world), so a tool the
    proxy knows nothing about is treated as dangerous.
    """

    readOnlyHint: bool = False
    destructiveHint: bool = True
    idempotentHint: bool = False
    openWorldHint: bool = True

    @classmethod
    def from_annotations(cls, annotations: Any) -> Hints:
        """From a tool's ``annotations`` object; non-boolean values count as absent."""
        if not isinstance(annotations, Mapping):
            return UNKNOWN_HINTS
        values: Mapping[str, Any] = annotations  # pyright: ignore[reportUnknownVariableType]
        known = {name: value for name in _HINT_NAMES if isinstance(value := values.get(name), bool)}
        return cls(**known) if known else UNKNOWN_HINTS

    def get(self, name: str) -> bool:
        return bool(getattr(self, name))


_HINT_NAMES = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
UNKNOWN_HINTS = Hints()
"""The hints of a tool the proxy has not seen (yet): MCP defaults."""


@dataclass(frozen=True, slots=True)
class ToolFacts:
    """What the proxy knows about the called tool's definition."""

    hints: Hints = UNKNOWN_HINTS
    """Hints from the tool's baseline (the definition first seen or last accepted)."""

    known: bool = False
    """Whether the tool has a baseline at all (when not, ``hints`` are the defaults)."""

    drifted_aspects: tuple[str, ...] = ()
    """What changed since the baseline (empty when the definition is unchanged)."""

    current_hints: Hints | None = None
    """Hints of the changed definition, when it drifted."""

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_aspects)


UNKNOWN_TOOL = ToolFacts()


@dataclass(frozen=True, slots=True)
class EvidenceStatus:
    """Which required evidence keys a session lacks."""

    missing: tuple[str, ...] = ()
    expired: tuple[str, ...] = ()


class SessionState(Protocol):
    """A read-only view of one session's evidence and call history, taken before ``decide()``."""

    def evidence(self, keys: Sequence[str]) -> EvidenceStatus:
        """Which of ``keys`` are missing or expired."""
        ...

    def unmet_dependencies(self, tools: Sequence[str], *, require_success: bool) -> tuple[str, ...]:
        """Which of ``tools`` have not run (successfully, when ``require_success``) in the session."""
        ...


class NoSessionState:
    """The state of a session the proxy knows nothing about: nothing is satisfied (fail closed).

    Used until an evidence store exists, and for calls with no resolved session.
    """

    def evidence(self, keys: Sequence[str]) -> EvidenceStatus:
        return EvidenceStatus(missing=tuple(keys))

    def unmet_dependencies(self, tools: Sequence[str], *, require_success: bool) -> tuple[str, ...]:
        return tuple(tools)


NO_SESSION_STATE = NoSessionState()


@dataclass(frozen=True, slots=True)
class CallFacts:
    """The governed call."""

    tool: str
    arguments: Mapping[str, Any] | None
    """The call's arguments; ``None`` when the call sent none (then no ``input`` condition holds)."""

    upstream: str | None = None
    """Name of the upstream (``upstreams:`` form), ``None`` for the single-upstream form."""

    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """Everything besides the call that a decision depends on."""

    tool: ToolFacts = UNKNOWN_TOOL
    session: SessionState = field(default=NO_SESSION_STATE)
