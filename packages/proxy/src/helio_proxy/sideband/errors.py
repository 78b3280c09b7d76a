"""Sideband error answers: each carries its HTTP status and stable ``code`` as data.

::

    SidebandError               {"error": <text>, "code": <code>, "details"?: {...extra}, ...extra}
    ├── OriginForbidden         403 origin_forbidden          any Origin header (null included)
    ├── MethodForbidden         403 method_forbidden          OPTIONS
    ├── BodyTooLarge            413 request_body_too_large    over 1 MiB
    ├── Unauthorized            401 unauthorized              missing or wrong bearer token
    ├── InvalidJson             400 invalid_json              body is not UTF-8 JSON (or a POST has none)
    ├── InputTooLarge           422 input_limit_exceeded      past a JSON cap (``limit``, ``max``)
    ├── InvalidRequest          400 invalid_request           a field is missing or wrong (``field``)
    ├── KeyNotAllowed           400 evidence_key_not_in_policy_allowlist
    ├── NotFound                404 not_found
    ├── MethodNotAllowed        405 method_not_allowed        (``Allow`` header)
    ├── ShuttingDown            503 sideband_shutting_down    a write during shutdown
    └── CapacityExhausted       503 capacity_exhausted        a store cap was reached (``limit``, ``max``)

Anything else is a bug and is answered 500 ``internal_error`` with no detail.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Final

from helio_proxy.errors import HelioProxyError

ALLOWED_KEYS_PREVIEW: Final = 20
"""How many allowlisted keys an ``evidence_key_not_in_policy_allowlist`` answer lists."""


class SidebandError(HelioProxyError):
    """An error answer of the sideband."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_request"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    @property
    def body(self) -> dict[str, Any]:
        """``{error, code, details?}``; the details are also repeated at the top level, where
        answers before the one error shape carried them (``helio-client`` 0.16 reads them there)."""
        body: dict[str, Any] = {"error": self.message, "code": self.code, **self.extra}
        if self.extra:
            body["details"] = dict(self.extra)
        return body


class OriginForbidden(SidebandError):
    status = 403
    code = "origin_forbidden"


class HostForbidden(SidebandError):
    status = 403
    code = "host_forbidden"


class MethodForbidden(SidebandError):
    status = 403
    code = "method_forbidden"


class BodyTooLarge(SidebandError):
    status = 413
    code = "request_body_too_large"


class Unauthorized(SidebandError):
    status = 401
    code = "unauthorized"


class InvalidJson(SidebandError):
    status = 400
    code = "invalid_json"


class InputTooLarge(SidebandError):
    """The body breaks a cap of :mod:`helio_proxy.jsonlimits` (depth, string or array length)."""

    status = 422
    code = "input_limit_exceeded"


class InvalidRequest(SidebandError):
    status = 400
    code = "invalid_request"

    @classmethod
    def field(cls, name: str, problem: str) -> InvalidRequest:
        return cls(f"{name} {problem}", field=name)


class KeyNotAllowed(SidebandError):
    status = 400
    code = "evidence_key_not_in_policy_allowlist"

    @classmethod
    def for_key(cls, key: str, allowed: Iterable[str]) -> KeyNotAllowed:
        ordered = sorted(allowed)
        preview = ordered[:ALLOWED_KEYS_PREVIEW]
        return cls(
            f"evidence key {key!r} is not required by any policy rule",
            key=key,
            allowed_keys=preview,
            allowed_key_count=len(ordered),
            truncated=len(preview) < len(ordered),
        )


class NotFound(SidebandError):
    status = 404
    code = "not_found"


class MethodNotAllowed(SidebandError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message)
        self.allow = allow


class ShuttingDown(SidebandError):
    status = 503
    code = "sideband_shutting_down"


class CapacityExhausted(SidebandError):
    status = 503
    code = "capacity_exhausted"
