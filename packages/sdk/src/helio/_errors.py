"""Every failure the SDK raises, under one root::

    HelioError(message, status_code=None)
    ├── HelioConnectionError           the sideband could not be reached
    ├── HelioTimeoutError              it did not answer within ``timeout``
    ├── HelioSerializationError        a payload is not JSON; nothing was sent
    ├── HelioProtocolError             the answer is not what the wire contract promises
    └── HelioHTTPError(message, status_code, code, details)
        │                              the sideband answered with an error status
        ├── HelioValidationError       400: invalid_request, invalid_json,
        │                                   evidence_key_not_in_policy_allowlist
        ├── HelioAuthError             401: missing or wrong HELIO_SDK_TOKEN
        ├── HelioForbiddenError        403: Origin header or OPTIONS request
        ├── HelioNotSidebandError      404: the URL is not Helio's sideband (e.g. the MCP
        │                                   endpoint); the message names the URL and the fix
        └── HelioPayloadTooLargeError  413: body over 1 MiB

Other statuses (405, 503, 500) raise ``HelioHTTPError`` itself; ``code`` tells them apart.
``status_code`` sits on the root, as in ``helio-client`` 0.16, so ``except HelioError as e:
e.status_code`` keeps working. No message ever contains the sideband token.
"""

import json
from collections.abc import Mapping
from typing import Any, cast

from helio._wire import CODE_KEY_NOT_ALLOWED, DEFAULT_MCP_PORT, URL_ENV_VAR

_MAX_SERVER_TEXT = 200


class HelioError(Exception):
    """Root of every SDK error; ``status_code`` is the HTTP status when there was one."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class HelioConnectionError(HelioError):
    """The sideband could not be reached (refused, reset, unresolvable host)."""


class HelioTimeoutError(HelioError):
    """The sideband did not answer within the client's timeout."""


class HelioSerializationError(HelioError):
    """A payload could not be encoded as JSON; the request was not sent."""


class HelioProtocolError(HelioError):
    """The sideband answered, but not with the JSON shape the wire contract promises."""


class HelioHTTPError(HelioError):
    """The sideband answered with an error status.

    ``code`` is the stable machine-readable code from the error body (``None`` when the body had
    none, e.g. an older proxy); ``details`` is the whole JSON error body.
    """

    status_code: int

    def __init__(
        self,
        message: str,
        status_code: int,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status_code)
        self.code = code
        self.details: dict[str, Any] = dict(details or {})


class HelioValidationError(HelioHTTPError):
    """400: the request was refused as invalid.

    ``field`` names the offending field for ``invalid_request``. For
    ``evidence_key_not_in_policy_allowlist``, ``key`` is the rejected key and ``allowed_keys`` lists
    (at most 20 of) the keys the policy accepts; ``allowed_key_count`` and ``truncated`` tell whether
    the list is complete. Attributes that do not apply are ``None``.
    """

    def __init__(
        self,
        message: str,
        status_code: int = 400,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status_code, code, details)
        body = self.details
        self.field: str | None = _str_or_none(body.get("field"))
        self.key: str | None = None
        self.allowed_keys: list[str] | None = None
        self.allowed_key_count: int | None = None
        self.truncated: bool | None = None
        if code == CODE_KEY_NOT_ALLOWED:
            self.key, self.allowed_keys, self.allowed_key_count, self.truncated = _allowlist_fields(body)


class HelioAuthError(HelioHTTPError):
    """401: the sideband wants ``Authorization: Bearer <HELIO_SDK_TOKEN>`` and got none or a wrong one."""


class HelioForbiddenError(HelioHTTPError):
    """403: the request carried an ``Origin`` header or used ``OPTIONS``, which the sideband refuses."""


class HelioNotSidebandError(HelioHTTPError):
    """404: the server at the client's URL has none of the sideband's routes, so it is not the sideband.

    Every route the SDK calls exists on Helio's sideband (an unknown session is answered with an
    empty state, not 404), so a 404 means a wrong URL: most often the proxy's MCP endpoint
    (port 3000) where the sideband (port 3200) was meant. ``url`` is the URL that answered.
    """

    def __init__(
        self,
        message: str,
        status_code: int = 404,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        url: str | None = None,
    ) -> None:
        super().__init__(message, status_code, code, details)
        self.url = url


class HelioPayloadTooLargeError(HelioHTTPError):
    """413: the request body was over the sideband's 1 MiB limit."""


_BY_STATUS: dict[int, type[HelioHTTPError]] = {
    400: HelioValidationError,
    401: HelioAuthError,
    403: HelioForbiddenError,
    413: HelioPayloadTooLargeError,
}


def error_from_response(
    operation: str, status: int, body: bytes, *, url: str | None = None
) -> HelioHTTPError:
    """Build the error for a non-2xx answer to ``operation`` (e.g. ``"POST /evidence"``) from ``url``.

    The class follows the status; ``code`` and ``details`` come from the JSON error body when it has
    one. Error bodies that are not JSON objects still produce an error, just without details. A 404
    says the URL is not the sideband and how to fix it.
    """
    details: dict[str, Any] = {}
    try:
        parsed: object = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        details = cast("dict[str, Any]", parsed)
    code = _str_or_none(details.get("code"))
    text = _str_or_none(details.get("error"))

    message = f"{operation} failed with HTTP {status}"
    if code:
        message += f" [{code}]"
    if text:
        message += f": {text[:_MAX_SERVER_TEXT]}"
    if status == 404:
        return HelioNotSidebandError(message + not_sideband_hint(url), status, code, details, url=url)
    error_class = _BY_STATUS.get(status, HelioHTTPError)
    if error_class is HelioValidationError and code == CODE_KEY_NOT_ALLOWED:
        message += _allowlist_summary(details)
    return error_class(message, status, code, details)


def not_sideband_hint(url: str | None) -> str:
    """What to say when ``url`` answered, but not as the sideband would."""
    where = f" at {url}" if url else ""
    return (
        f"; the server{where} does not look like Helio's sideband. The sideband listens on :3200 "
        f"(sdk.port; 'helio start' prints 'SDK sideband listening on ...'), the MCP endpoint on "
        f":{DEFAULT_MCP_PORT}. Pass sideband_url=... or set {URL_ENV_VAR} to the sideband's address."
    )


def _allowlist_fields(
    body: Mapping[str, Any],
) -> tuple[str | None, list[str] | None, int | None, bool | None]:
    """Read ``key``, ``allowed_keys``, ``allowed_key_count`` and ``truncated``, ignoring wrong types."""
    raw_keys = body.get("allowed_keys")
    keys = (
        [k for k in cast("list[object]", raw_keys) if isinstance(k, str)]
        if isinstance(raw_keys, list)
        else None
    )
    count = body.get("allowed_key_count")
    truncated = body.get("truncated")
    return (
        _str_or_none(body.get("key")),
        keys,
        count if isinstance(count, int) and not isinstance(count, bool) else None,
        truncated if isinstance(truncated, bool) else None,
    )


def _allowlist_summary(body: Mapping[str, Any]) -> str:
    _, keys, count, truncated = _allowlist_fields(body)
    shown = ", ".join(keys or []) or "none"
    if truncated and keys is not None and count is not None:
        shown += f" (first {len(keys)} of {count})"
    return f"; allowed keys: {shown}"


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
