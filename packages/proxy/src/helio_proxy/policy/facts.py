"""What ``decide()`` is given: the call, the tool's known definition, and the session's state.

Everything here is an immutable value or a synchronous read-only view, so a decision is a pure
function of its inputs. Whatever needs I/O (the session's evidence in the store, the upstream's
``tools/list``) is fetched by the gateway first and handed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from helio_proxy.config.policies import Rule
from helio_proxy.evidence.gates import GateResult
from helio_proxy.values import value


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

    pending: bool = False
    """Unknown because the upstream's tools have not been listed yet (it may be down): a block that
    only the MCP defaults cause is then temporary (``baselines_unavailable``, retry allowed)."""

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_aspects)


UNKNOWN_TOOL = ToolFacts()
PENDING_TOOL = ToolFacts(pending=True)
"""A tool the proxy knows nothing about because it has not listed the upstream's tools yet."""

PERMISSIVE_HINTS = Hints(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
"""The most permissive hints: what a pending tool might turn out to have."""


@value
class CallFacts:
    """The governed call."""

    tool: str
    arguments: Mapping[str, Any] | None
    """The call's arguments; ``None`` when the call sent none (then no ``input`` condition holds)."""

    upstream: str | None = None
    """Name of the upstream (``upstreams:`` form), ``None`` for the single-upstream form."""

    session_id: str | None = None

    agent: str | None = None
    """The authenticated agent (``listen.auth``); ``None`` when agents are not authenticated."""


class GateChecker(Protocol):
    """Whether the call's session meets its gates, from state read before ``decide()``.

    ``rule`` is the first matching rule (``None`` when none matched: the session's SDK-declared
    prerequisites of the tool still apply); ``arguments`` are the call's, which evidence bindings
    (``match``) compare with the evidence's source. See :mod:`helio_proxy.policy.gates`.
    """

    def check(self, tool: str, rule: Rule | None, arguments: Any = None) -> GateResult: ...


@value
class DecisionContext:
    """Everything besides the call that a decision depends on."""

    tool: ToolFacts = UNKNOWN_TOOL
    gates: GateChecker | None = None
    """The session's gate check; ``None`` means a session with nothing in it (every gate unmet)."""
