"""Typed, frozen views of what the sideband returns, and the lenient parsers that build them.

Parsing is lenient in the ways a newer or older proxy differs: unknown fields are ignored, fields
added after ``helio-client`` 0.16 (``verified``, ``call_id``, ``dependencies``) default when absent,
and a ``timestamp`` sent as an ISO-8601 string (as the TypeScript proxy does) is read as epoch
milliseconds like the numeric one our proxy sends. Anything else out of shape raises
``HelioProtocolError``.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from helio._errors import HelioProtocolError


@dataclass(frozen=True)
class EvidenceEntry:
    """One live piece of evidence the proxy holds for a session. Times are epoch milliseconds."""

    evidence_key: str
    data: Any
    tool_name: str
    timestamp: float
    expires_at: float
    verified: bool = False
    """True only when ``call_id`` names a successful call the proxy itself forwarded in this session."""
    call_id: str | None = None


@dataclass(frozen=True)
class CompletedTool:
    """A ``tools/call`` the proxy forwarded in the session; ``succeeded`` is false for ``isError`` results."""

    tool_name: str
    timestamp: float
    succeeded: bool
    call_id: str | None = None


@dataclass(frozen=True)
class DeclaredDependency:
    """Tools that must have completed successfully in the session before ``tool_name`` may run."""

    tool_name: str
    requires: list[str] = field(default_factory=list[str])


@dataclass(frozen=True)
class SessionState:
    """Everything the proxy holds for one session. An unknown session is simply empty."""

    session_id: str
    evidence: dict[str, EvidenceEntry] = field(default_factory=dict[str, EvidenceEntry])
    context: dict[str, Any] = field(default_factory=dict[str, Any])
    completed_tools: list[CompletedTool] = field(default_factory=list[CompletedTool])
    dependencies: list[DeclaredDependency] = field(default_factory=list[DeclaredDependency])


@dataclass(frozen=True)
class EvidenceStateReport:
    """The session state compared with the keys declared through ``require_evidence``.

    ``satisfied`` are required keys with live evidence, ``missing`` those without (never marked, or
    expired: the proxy lists only unexpired evidence). Both keep the order of ``required``.
    """

    state: SessionState
    required: list[str] = field(default_factory=list[str])
    satisfied: list[str] = field(default_factory=list[str])
    missing: list[str] = field(default_factory=list[str])

    @property
    def complete(self) -> bool:
        """True when no required key is missing."""
        return not self.missing

    # helio-client 0.16 returned these at the top level of its report.
    @property
    def session_id(self) -> str:
        return self.state.session_id

    @property
    def evidence(self) -> dict[str, EvidenceEntry]:
        return self.state.evidence

    @property
    def context(self) -> dict[str, Any]:
        return self.state.context

    @property
    def completed_tools(self) -> list[CompletedTool]:
        return self.state.completed_tools


@dataclass(frozen=True)
class EvidenceReceipt:
    """The sideband's answer to ``mark_evidence``.

    ``expires_at`` (epoch milliseconds) is ``None`` when the proxy did not say (older proxies
    answer just ``{"ok": true}``); ``verified`` tells whether the proxy bound the evidence to the
    call named by ``call_id``.
    """

    evidence_key: str
    expires_at: float | None = None
    verified: bool = False


def parse_session_state(raw: object) -> SessionState:
    """Build a ``SessionState`` from the JSON body of ``GET /session/{id}/state``."""
    obj = _object(raw, "session state")
    evidence_raw = _object(obj.get("evidence", {}), "evidence")
    return SessionState(
        session_id=_str(obj, "session_id"),
        evidence={
            key: _evidence_entry(key, _object(entry, f"evidence[{key!r}]"))
            for key, entry in evidence_raw.items()
        },
        context=_object(obj.get("context", {}), "context"),
        completed_tools=[
            _completed_tool(_object(item, "completed_tools[]")) for item in _list(obj, "completed_tools")
        ],
        dependencies=[_dependency(_object(item, "dependencies[]")) for item in _list(obj, "dependencies")],
    )


def parse_receipt(raw: object, evidence_key: str) -> EvidenceReceipt:
    """Build an ``EvidenceReceipt`` from the JSON body of a 201 answer to ``POST /evidence``."""
    obj = _object(raw, "evidence receipt")
    expires_at = obj.get("expires_at")
    return EvidenceReceipt(
        evidence_key=_str(obj, "evidence_key", default=evidence_key),
        expires_at=None if expires_at is None else _millis(expires_at, "expires_at"),
        verified=_bool(obj, "verified", default=False),
    )


def _evidence_entry(key: str, obj: dict[str, Any]) -> EvidenceEntry:
    return EvidenceEntry(
        evidence_key=_str(obj, "evidence_key", default=key),
        data=obj.get("data"),
        tool_name=_str(obj, "tool_name"),
        timestamp=_millis(obj.get("timestamp"), "timestamp"),
        expires_at=_millis(obj.get("expires_at"), "expires_at"),
        verified=_bool(obj, "verified", default=False),
        call_id=_optional_str(obj, "call_id"),
    )


def _completed_tool(obj: dict[str, Any]) -> CompletedTool:
    return CompletedTool(
        tool_name=_str(obj, "tool_name"),
        timestamp=_millis(obj.get("timestamp"), "timestamp"),
        succeeded=_bool(obj, "succeeded"),
        call_id=_optional_str(obj, "call_id"),
    )


def _dependency(obj: dict[str, Any]) -> DeclaredDependency:
    requires = _list(obj, "requires")
    if not all(isinstance(name, str) for name in requires):
        raise HelioProtocolError("dependencies[].requires must hold strings")
    return DeclaredDependency(tool_name=_str(obj, "tool_name"), requires=cast("list[str]", requires))


_MISSING: Any = object()


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in cast("dict[object, Any]", value)):
        raise HelioProtocolError(f"malformed sideband response: {what} must be a JSON object")
    return cast("dict[str, Any]", value)


def _list(obj: Mapping[str, Any], name: str) -> list[Any]:
    value = obj.get(name, [])
    if not isinstance(value, list):
        raise HelioProtocolError(f"malformed sideband response: {name} must be a list")
    return cast("list[Any]", value)


def _str(obj: Mapping[str, Any], name: str, default: str = _MISSING) -> str:
    value = obj.get(name, default)
    if not isinstance(value, str):
        raise HelioProtocolError(f"malformed sideband response: {name} must be a string")
    return value


def _optional_str(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise HelioProtocolError(f"malformed sideband response: {name} must be a string or null")
    return value


def _bool(obj: Mapping[str, Any], name: str, default: bool = _MISSING) -> bool:
    value = obj.get(name, default)
    if not isinstance(value, bool):
        raise HelioProtocolError(f"malformed sideband response: {name} must be a boolean")
    return value


def _millis(value: object, name: str) -> float:
    """Epoch milliseconds from a JSON number or an ISO-8601 string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp() * 1000
    raise HelioProtocolError(f"malformed sideband response: {name} must be epoch milliseconds")
