"""Sideband request bodies: decoding and field rules, one parser per route.

Each parser returns a typed request or raises :class:`InvalidRequest` naming the first bad field,
in the order the fields are documented. Unknown fields are ignored (newer clients, older proxy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from helio_proxy import jsonlimits
from helio_proxy.evidence.store import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS
from helio_proxy.session.identity import MAX_SESSION_ID_LENGTH, usable
from helio_proxy.sideband.errors import InputTooLarge, InvalidJson, InvalidRequest

NO_BODY: Any = object()
"""An empty request body (distinct from the JSON value ``null``)."""


def decode_body(body: bytes) -> Any:
    """The JSON value of a non-empty body; ``invalid_json`` for anything else (``NaN`` included),
    ``input_limit_exceeded`` past a JSON cap (the defaults of :mod:`helio_proxy.jsonlimits`)."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        jsonlimits.check(body)
    except jsonlimits.InputLimitExceeded as exc:
        raise InputTooLarge(str(exc), **exc.details) from None
    try:
        return json.loads(body.decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidJson("request body is not valid JSON") from None


def _object(body: Any) -> dict[str, Any]:
    if body is NO_BODY:
        raise InvalidJson("request body is empty; a JSON object is expected")
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return cast("dict[str, Any]", body)


def _present(fields: dict[str, Any], name: str) -> Any:
    if name not in fields:
        raise InvalidRequest.field(name, "is required")
    return fields[name]


def _name(fields: dict[str, Any], field: str) -> str:
    value = _present(fields, field)
    if not isinstance(value, str) or not value:
        raise InvalidRequest.field(field, "must be a non-empty string")
    return value


def _session_id(fields: dict[str, Any]) -> str:
    value = _name(fields, "session_id")
    if usable(value) is None:
        raise InvalidRequest.field(
            "session_id", f"must be non-blank and at most {MAX_SESSION_ID_LENGTH} characters"
        )
    return value


def _names(fields: dict[str, Any], field: str) -> list[str]:
    value = _present(fields, field)
    items = cast("list[Any]", value) if isinstance(value, list) else []
    if not items or not all(isinstance(item, str) and item for item in items):
        raise InvalidRequest.field(field, "must be a non-empty list of non-empty strings")
    return cast("list[str]", items)


def _ttl(fields: dict[str, Any]) -> int:
    value: Any = fields.get("ttl_seconds", DEFAULT_TTL_SECONDS)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TTL_SECONDS:
        raise InvalidRequest.field("ttl_seconds", f"must be an integer from 1 to {MAX_TTL_SECONDS}")
    return value


@dataclass(frozen=True, slots=True)
class EvidenceRequest:
    """``POST /evidence``."""

    session_id: str
    tool_name: str
    evidence_key: str
    evidence_data: Any
    ttl_seconds: int
    call_id: str | None

    @classmethod
    def parse(cls, body: Any) -> EvidenceRequest:
        fields = _object(body)
        return cls(
            session_id=_session_id(fields),
            tool_name=_name(fields, "tool_name"),
            evidence_key=_name(fields, "evidence_key"),
            evidence_data=_present(fields, "evidence_data"),
            ttl_seconds=_ttl(fields),
            call_id=None if fields.get("call_id") is None else _name(fields, "call_id"),
        )


@dataclass(frozen=True, slots=True)
class ContextRequest:
    """``POST /context``."""

    session_id: str
    key: str
    value: Any

    @classmethod
    def parse(cls, body: Any) -> ContextRequest:
        fields = _object(body)
        return cls(_session_id(fields), _name(fields, "key"), _present(fields, "value"))


@dataclass(frozen=True, slots=True)
class DependenciesRequest:
    """``POST /dependencies``."""

    session_id: str
    tool_name: str
    requires: list[str]

    @classmethod
    def parse(cls, body: Any) -> DependenciesRequest:
        fields = _object(body)
        return cls(_session_id(fields), _name(fields, "tool_name"), _names(fields, "requires"))
