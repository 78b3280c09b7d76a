"""Gate checkers for ``decide()``: the session's evidence and prerequisites, read beforehand.

The check itself is :func:`helio_proxy.evidence.check_gates` (pure); these classes bind it to one
call's session state so ``decide()`` can ask "does this session meet this rule?" without I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from helio_proxy.config.policies import Rule
from helio_proxy.evidence.gates import (
    PASSED,
    STORE_UNAVAILABLE,
    GateRequirements,
    GateResult,
    check_gates,
)
from helio_proxy.evidence.model import SessionSnapshot


@dataclass(frozen=True, slots=True)
class SnapshotGates:
    """Gates checked against a session snapshot taken at ``now_ms`` (``None``: unresolved session)."""

    state: SessionSnapshot | None
    now_ms: int
    producers: Mapping[str, str] = field(default_factory=dict[str, str])
    """Evidence key → producing tool, for the suggestions."""
    unavailable: bool = False
    """The session is resolved but its state could not be read (the store is unreachable): every
    call of it fails closed with ``store_unavailable``, since SDK-declared prerequisites may apply
    to any tool."""

    def check(self, tool: str, rule: Rule | None, arguments: Any = None) -> GateResult:
        if self.unavailable:
            return STORE_UNAVAILABLE
        if (rule is None or not rule.is_gate) and (self.state is None or not self.state.dependencies):
            # The common case, without building requirements: no rule gate, and no prerequisite
            # the SDK declared (an unresolved session has none).
            return PASSED
        requirements = GateRequirements.for_call(tool, rule, self.producers, arguments)
        return check_gates(requirements, self.state, self.now_ms)


UNRESOLVED_GATES: Final = SnapshotGates(None, now_ms=0)
"""The gates of a call whose session is unresolved: a rule gate fails (``session_unresolved``),
anything else passes. It reads neither the time nor the producers, so it is made once."""

EMPTY_SESSION: Final = SnapshotGates(SessionSnapshot(session_id=""), now_ms=0)
"""A session with no evidence and no calls: what ``helio policy test`` and a proxy without a
session store assume. Every rule gate is unmet, with every requirement listed."""
