"""The request checks of ``helio.testing.FakeSideband``, one function per rule of the wire contract.

Each check returns the validated value or raises ``Rejection``, which carries the exact error answer
(status and ``{"error", "code", ...}`` body) that ``docs/sideband-api.md`` specifies.
"""

import hashlib
import hmac
import json
from typing import Any, cast

from helio._wire import CODE_INVALID_JSON, CODE_INVALID_REQUEST, MAX_SESSION_ID_LENGTH, MAX_TTL_SECONDS

NO_BODY: Any = object()
"""Stands for an empty request body, which is not the JSON value ``null``."""


class Rejection(Exception):
    """An error answer: HTTP status, stable code, human text and any extra body fields."""

    def __init__(self, status: int, code: str, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body: dict[str, Any] = {"error": error, "code": code, **extra}
        if extra:
            self.body["details"] = dict(extra)


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>``, compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    # Hash both sides so the comparison takes the same time whatever the lengths.
    expected = hashlib.sha256(token.encode()).digest()
    presented = hashlib.sha256(given.strip().encode()).digest()
    return hmac.compare_digest(presented, expected) and scheme.lower() == "bearer"


def decode_json(body: bytes) -> Any:
    """The decoded body; 400 ``invalid_json`` for non-UTF-8 or non-JSON bodies (NaN included)."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=refuse)
    except ValueError as error:  # UnicodeDecodeError is a ValueError too
        raise Rejection(400, CODE_INVALID_JSON, "request body is not valid JSON") from error


def json_object(body: Any) -> dict[str, Any]:
    """The body as an object; unknown fields in it are ignored by the routes."""
    if body is NO_BODY:
        raise Rejection(400, CODE_INVALID_JSON, "request body is empty; a JSON object is expected")
    if not isinstance(body, dict):
        raise Rejection(400, CODE_INVALID_REQUEST, "request body must be a JSON object")
    return cast("dict[str, Any]", body)


def present(fields: dict[str, Any], name: str) -> Any:
    """A field that must be there; any JSON value, ``null`` included."""
    if name not in fields:
        raise _invalid(name, "is required")
    return fields[name]


def name(fields: dict[str, Any], field: str) -> str:
    """A field that must be a non-empty string."""
    value = present(fields, field)
    if not isinstance(value, str) or not value:
        raise _invalid(field, "must be a non-empty string")
    return value


def session_id(fields: dict[str, Any]) -> str:
    """``session_id``: non-blank, at most 256 characters, kept verbatim (never trimmed)."""
    value = name(fields, "session_id")
    if not value.strip() or len(value) > MAX_SESSION_ID_LENGTH:
        raise _invalid("session_id", f"must be non-blank and at most {MAX_SESSION_ID_LENGTH} characters")
    return value


def names(fields: dict[str, Any], field: str) -> list[str]:
    """A field that must be a non-empty list of non-empty strings."""
    value = present(fields, field)
    items = cast("list[Any]", value) if isinstance(value, list) else []
    if not items or not all(isinstance(item, str) and item for item in items):
        raise _invalid(field, "must be a non-empty list of non-empty strings")
    return cast("list[str]", items)


def ttl_seconds(value: Any) -> int:
    """``ttl_seconds``: an integer from 1 to 86,400 (``300.0`` counts as an integer, as in JSON)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TTL_SECONDS:
        raise _invalid("ttl_seconds", f"must be an integer from 1 to {MAX_TTL_SECONDS}")
    return value


def _invalid(field: str, problem: str) -> Rejection:
    return Rejection(400, CODE_INVALID_REQUEST, f"{field} {problem}", field=field)
