"""The in-memory session store behind ``helio.testing.FakeSideband``.

It keeps, per session, what the proxy's sideband keeps: evidence with expiry, context, the tool
calls the proxy forwarded, and SDK-declared dependencies; and it renders a session in the exact
JSON shape of ``GET /session/{id}/state``. Time comes from the injected clock (epoch seconds);
the wire carries epoch milliseconds. Not thread-safe on its own: the fake holds a lock around it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Session:
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])
    context: dict[str, Any] = field(default_factory=dict[str, Any])
    completed_tools: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    dependencies: dict[str, list[str]] = field(default_factory=dict[str, list[str]])


class SessionStore:
    """Session state keyed by session id; ids are compared byte for byte, never trimmed."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._sessions: dict[str, _Session] = {}

    def now_ms(self) -> int:
        """The clock's current time in epoch milliseconds."""
        return int(self._clock() * 1000)

    def put_evidence(
        self,
        session_id: str,
        *,
        tool_name: str,
        evidence_key: str,
        data: Any,
        ttl_seconds: int,
        call_id: str | None,
    ) -> dict[str, Any]:
        """Store (or replace) one piece of evidence and return its wire entry.

        It is ``verified`` only when ``call_id`` names a call of the same tool, forwarded in this
        session, that succeeded.
        """
        session = self._sessions.setdefault(session_id, _Session())
        verified = call_id is not None and any(
            call["call_id"] == call_id and call["tool_name"] == tool_name and call["succeeded"]
            for call in session.completed_tools
        )
        now = self.now_ms()
        entry = {
            "evidence_key": evidence_key,
            "data": data,
            "tool_name": tool_name,
            "timestamp": now,
            "expires_at": now + ttl_seconds * 1000,
            "verified": verified,
            "call_id": call_id,
        }
        session.evidence[evidence_key] = entry
        return entry

    def put_context(self, session_id: str, key: str, value: Any) -> None:
        """Set one context value for the session."""
        self._sessions.setdefault(session_id, _Session()).context[key] = value

    def add_dependency(self, session_id: str, tool_name: str, requires: list[str]) -> None:
        """Add prerequisites for ``tool_name``; earlier declarations for it are kept, not replaced."""
        known = self._sessions.setdefault(session_id, _Session()).dependencies.setdefault(tool_name, [])
        known.extend(name for name in dict.fromkeys(requires) if name not in known)

    def record_tool_call(self, session_id: str, tool_name: str, *, succeeded: bool, call_id: str) -> None:
        """Remember a ``tools/call`` the proxy forwarded, as the real proxy does after each call."""
        session = self._sessions.setdefault(session_id, _Session())
        session.completed_tools.append(
            {"tool_name": tool_name, "timestamp": self.now_ms(), "succeeded": succeeded, "call_id": call_id}
        )

    def snapshot(self, session_id: str, *, full_view: bool = True) -> dict[str, Any]:
        """The session as ``GET /session/{id}/state`` returns it; expired evidence is dropped first.

        Without ``full_view`` (``?view=full``) entries keep the reference's shape: no ``verified``
        or ``call_id`` fields, which the reference SDK ``helio-client`` 0.16 cannot read.
        """
        session = self._sessions.get(session_id)
        if session is None:
            session = _Session()
        else:
            now = self.now_ms()
            for key in [key for key, entry in session.evidence.items() if entry["expires_at"] <= now]:
                del session.evidence[key]
        return {
            "session_id": session_id,
            "evidence": {key: _shaped(entry, full_view) for key, entry in session.evidence.items()},
            "context": dict(session.context),
            "completed_tools": [_shaped(call, full_view) for call in session.completed_tools],
            "dependencies": [
                {"tool_name": tool, "requires": list(requires)}
                for tool, requires in session.dependencies.items()
            ],
        }


_EXTENDED_FIELDS = ("verified", "call_id")


def _shaped(entry: dict[str, Any], full_view: bool) -> dict[str, Any]:
    if full_view:
        return dict(entry)
    return {name: value for name, value in entry.items() if name not in _EXTENDED_FIELDS}
