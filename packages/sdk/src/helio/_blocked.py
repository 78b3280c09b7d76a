"""``helio.blocked()``: a governance block, however the agent's MCP stack delivered it, as a value.

The proxy answers a blocked ``tools/call`` with the JSON-RPC error ``-32001`` whose ``data`` has
``blocked: true`` and a ``reason`` (docs/policies.md, "What a blocked agent gets"). MCP clients
raise it as their own exception type, and agent frameworks wrap that again: pydantic-ai raises
``ModelRetry`` from the MCP error, LangChain and the OpenAI Agents SDK hand on the MCP SDK's
``MCPError``, task groups put it in an ``ExceptionGroup``. ``blocked()`` looks through all of that
by shape (an ``error``/``code``/``data`` triple), so it imports none of those libraries.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, cast

BLOCKED_ERROR_CODE: Final = -32001
"""The JSON-RPC error code of every Helio governance block."""

_MAX_DEPTH: Final = 16
"""How deep ``blocked()`` follows causes, contexts, groups and arguments."""


@dataclass(frozen=True)
class Blocked:
    """A call the proxy blocked, with the fields an agent needs to repair it and retry.

    Lists are empty and the rest ``None`` when the block does not carry them; ``data`` is the
    error's whole ``data`` object, for the fields not named here (``policy_reason``,
    ``ticket_id``, ``budgets``, ...).
    """

    reason: str
    """``evidence_missing``, ``dependency_missing``, ``policy_denied``, ``rate_limited``, ..."""
    message: str
    """The rule's feedback message, or the proxy's generated one."""
    rule: str | None
    rule_index: int | None
    action: str | None
    suggestion: str | None
    retry_allowed: bool
    missing_evidence: list[str] = field(default_factory=list[str])
    expired_evidence: list[str] = field(default_factory=list[str])
    unverified_evidence: list[str] = field(default_factory=list[str])
    missing_dependencies: list[str] = field(default_factory=list[str])
    reset_at: datetime | None = None
    """When a limit's window frees room (``rate_limited``, ``spend_limited``), timezone-aware."""
    current: int | Decimal | None = None
    """Calls (``rate_limited``) or spend (``spend_limited``, a ``Decimal``) already counted."""
    max: int | Decimal | None = None
    """The limit's ceiling, in the same unit as ``current``."""
    window_seconds: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict[str, Any])


def blocked(error: object) -> Blocked | None:
    """The ``Blocked`` inside ``error``, or ``None`` when it is not a Helio block.

    ``error`` may be an exception (the MCP SDK's ``MCPError``/``McpError``, or any exception
    that has one as its ``__cause__``, ``__context__``, argument or group member), an
    ``ErrorData``-like object with ``code``, ``message`` and ``data``, or a JSON-RPC error as a
    dict, whole response (``{"jsonrpc": ..., "error": {...}}``) or just its ``error`` member.
    """
    seen: set[int] = set()
    pending: list[tuple[object, int]] = [(error, 0)]
    while pending:
        item, depth = pending.pop(0)
        if id(item) in seen or depth > _MAX_DEPTH:
            continue
        seen.add(id(item))
        found = _from_error_object(item)
        if found is not None:
            return found
        pending.extend((inner, depth + 1) for inner in _inside(item))
    return None


def _inside(item: object) -> list[object]:
    """Where a wrapped error can sit: the ``error`` member, causes, group members, arguments."""
    if isinstance(item, Mapping):
        return [cast(Mapping[str, Any], item).get("error")]
    inner: list[object] = []
    nested = getattr(item, "error", None)
    if nested is not None:
        inner.append(nested)
    if isinstance(item, BaseException):
        if isinstance(item, BaseExceptionGroup):
            inner.extend(cast(BaseExceptionGroup[BaseException], item).exceptions)
        if item.__cause__ is not None:
            inner.append(item.__cause__)
        if item.__context__ is not None and not item.__suppress_context__:
            inner.append(item.__context__)
        for arg in cast(tuple[object, ...], item.args):
            if isinstance(arg, BaseException | Mapping):
                inner.append(cast(object, arg))
    return inner


def _from_error_object(item: object) -> Blocked | None:
    if isinstance(item, Mapping):
        fields = cast(Mapping[str, Any], item)
        code, message, data = fields.get("code"), fields.get("message"), fields.get("data")
    else:
        code = getattr(item, "code", None)
        message = getattr(item, "message", None)
        data = getattr(item, "data", None)
    if code != BLOCKED_ERROR_CODE or not isinstance(data, Mapping):
        return None
    data = cast(Mapping[str, Any], data)
    reason = data.get("reason")
    if data.get("blocked") is not True or not isinstance(reason, str):
        return None
    return _parse(reason, message if isinstance(message, str) else "", data)


def _parse(reason: str, message: str, data: Mapping[str, Any]) -> Blocked:
    rule_index = data.get("rule_index")
    window = data.get("window_seconds")
    return Blocked(
        reason=reason,
        message=message,
        rule=_text(data.get("rule")),
        rule_index=rule_index if isinstance(rule_index, int) and not isinstance(rule_index, bool) else None,
        action=_text(data.get("action")),
        suggestion=_text(data.get("suggestion")),
        retry_allowed=data.get("retry_allowed") is True,
        missing_evidence=_names(data.get("missing_evidence")),
        expired_evidence=_names(data.get("expired_evidence")),
        unverified_evidence=_names(data.get("unverified_evidence")),
        missing_dependencies=_names(data.get("missing_dependencies")),
        reset_at=_instant(data.get("reset_at")),
        current=_amount(data.get("current_calls", data.get("current_spend"))),
        max=_amount(data.get("max_calls", data.get("max_spend"))),
        window_seconds=window if isinstance(window, int) and not isinstance(window, bool) else None,
        data=dict(data),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _names(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [name for name in cast(list[Any], value) if isinstance(name, str)]


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _amount(value: Any) -> int | Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str | float):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    return None
