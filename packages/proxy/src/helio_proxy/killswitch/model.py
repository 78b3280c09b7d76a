"""Kill-switch scopes, the state a proxy holds in memory, and the block a killed call gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from helio_proxy.policy import Deny

GLOBAL: Final = "global"
"""The scope that stops every call."""
MAX_SCOPE_NAME: Final = 200
"""Longest upstream name or agent id a scope may name (characters)."""


class ScopeError(ValueError):
    """A scope that is not ``global``, ``upstream:NAME`` or ``agent:ID``."""


def upstream_scope(name: str) -> str:
    return f"upstream:{name}"


def agent_scope(agent_id: str) -> str:
    return f"agent:{agent_id}"


def parse_scope(scope: str) -> str:
    """``scope`` checked (``global``, ``upstream:NAME`` or ``agent:ID``); raises :class:`ScopeError`."""
    if scope == GLOBAL:
        return scope
    kind, sep, name = scope.partition(":")
    if not sep or kind not in ("upstream", "agent") or not name.strip():
        raise ScopeError(f"unknown kill-switch scope {scope!r} (global, upstream:NAME or agent:ID)")
    if len(name) > MAX_SCOPE_NAME or any(ord(ch) < 32 for ch in name):
        raise ScopeError(f"kill-switch scope {scope!r}: the name is too long or has control characters")
    return scope


@dataclass(frozen=True, slots=True)
class Engagement:
    """One engaged scope: why, by whom, when (RFC 3339 text), from where (``cli``/``api``)."""

    scope: str
    reason: str | None = None
    actor: str | None = None
    changed_at: str | None = None
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "reason": self.reason,
            "actor": self.actor,
            "changed_at": self.changed_at,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class KillState:
    """What a proxy holds in memory: the engaged scopes, or why the state could not be read."""

    engaged: Mapping[str, Engagement] = field(default_factory=dict[str, Engagement])
    unreadable: str | None = None
    """Set when the state could not be read: every call is blocked (fail closed)."""

    def blocking(self, upstream: str | None, agent: str | None) -> Engagement | None:
        """The engagement that stops a call to ``upstream`` from ``agent`` (``None``: it may go on)."""
        if self.unreadable is not None:
            return Engagement(GLOBAL, f"the kill switch state cannot be read ({self.unreadable})")
        if not self.engaged:
            return None
        found = self.engaged.get(GLOBAL)
        if found is None and upstream is not None:
            found = self.engaged.get(upstream_scope(upstream))
        if found is None and agent is not None:
            found = self.engaged.get(agent_scope(agent))
        return found

    @property
    def any_engaged(self) -> bool:
        return self.unreadable is not None or bool(self.engaged)


def kill_deny(engagement: Engagement) -> Deny:
    """The block of a call the kill switch stops (``reason: kill_switch``, no retry)."""
    details: dict[str, Any] = {"kill_switch_scope": engagement.scope}
    if engagement.reason:
        details["kill_switch_reason"] = engagement.reason
    if engagement.actor:
        details["engaged_by"] = engagement.actor
    if engagement.changed_at:
        details["engaged_at"] = engagement.changed_at
    return Deny(reason="kill_switch", blocked_action="deny", retry_allowed=False, details=details)
