"""``HelioClient``: one method per sideband route, each call explicit about its session."""

import json
import os
import warnings
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import quote, urlsplit

from helio._errors import (
    HelioConnectionError,
    HelioError,
    HelioProtocolError,
    HelioSerializationError,
    HelioTimeoutError,
    error_from_response,
    not_sideband_hint,
)
from helio._models import EvidenceReceipt, SessionState, parse_receipt, parse_session_state
from helio._transport import Transport, TransportRequest, UrllibTransport
from helio._version import __version__
from helio._wire import (
    DEFAULT_SIDEBAND_URL,
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_TTL_SECONDS,
    TOKEN_ENV_VAR,
    URL_ENV_VAR,
)

_USER_AGENT = f"helio-sdk/{__version__}"


def resolve_sideband_url(sideband_url: str | None, proxy_url: str | None, *, stacklevel: int) -> str:
    """The sideband URL a client uses: ``sideband_url``, else the deprecated ``proxy_url``, else
    ``HELIO_SDK_URL`` (read now; empty counts as unset), else ``http://127.0.0.1:3200``.

    ``ValueError`` when it is not an http(s) URL, naming where it came from.
    """
    if proxy_url is not None:
        if sideband_url is not None:
            raise TypeError("give sideband_url or its old name proxy_url, not both")
        warnings.warn(
            "proxy_url is deprecated: call it sideband_url (the same URL, the sideband's, port 3200)",
            DeprecationWarning,
            stacklevel=stacklevel + 1,
        )
        url, source = proxy_url, "proxy_url"
    elif sideband_url is not None:
        url, source = sideband_url, "sideband_url"
    elif os.environ.get(URL_ENV_VAR):
        url, source = os.environ[URL_ENV_VAR], URL_ENV_VAR
    else:
        url, source = DEFAULT_SIDEBAND_URL, "sideband_url"
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(
            f"{source} must be an http:// or https:// URL (the sideband's, e.g. {DEFAULT_SIDEBAND_URL})"
        )
    return url.rstrip("/")


class HelioClient:
    """A client for the proxy's sideband API (``docs/sideband-api.md``).

    The sideband's URL is ``sideband_url`` when given, otherwise ``HELIO_SDK_URL``, otherwise
    ``http://127.0.0.1:3200``; ``proxy_url`` is its deprecated old name. The bearer token is
    ``token`` when given (``""`` means: send none), otherwise ``HELIO_SDK_TOKEN``. Both variables
    are read once, here; an empty variable counts as unset. Requests go through ``transport``
    (default: ``UrllibTransport``). A client holds no per-call state and may be shared between
    threads.
    """

    def __init__(
        self,
        sideband_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        token: str | None = None,
        transport: Transport | None = None,
        proxy_url: str | None = None,
    ) -> None:
        url = resolve_sideband_url(sideband_url, proxy_url, stacklevel=2)
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._proxy_url = url
        self._timeout = float(timeout)
        self._token = _resolve_token(token)
        self._transport: Transport = transport if transport is not None else UrllibTransport()
        self._closed = False

    @property
    def sideband_url(self) -> str:
        """Base URL of the sideband, without a trailing slash."""
        return self._proxy_url

    @property
    def proxy_url(self) -> str:
        """The old name of :attr:`sideband_url` (deprecated)."""
        return self._proxy_url

    @property
    def timeout(self) -> float:
        """Seconds each request may take before ``HelioTimeoutError``."""
        return self._timeout

    def mark_evidence(
        self,
        session_id: str,
        tool_name: str,
        evidence_key: str,
        data: Any,
        ttl: int = DEFAULT_TTL_SECONDS,
        *,
        call_id: str | None = None,
    ) -> EvidenceReceipt:
        """Record evidence ``evidence_key`` for the session (``POST /evidence``).

        ``data`` is any JSON value, typically the tool output the evidence stands for; it lives for
        ``ttl`` seconds. ``call_id`` binds it to a call the proxy forwarded: the receipt's ``verified``
        is true when the proxy saw that call succeed. An evidence key that no policy rule asks for
        raises ``HelioValidationError`` with ``allowed_keys``.
        """
        payload: dict[str, Any] = {
            "session_id": session_id,
            "tool_name": tool_name,
            "evidence_key": evidence_key,
            "evidence_data": data,
            "ttl_seconds": ttl,
        }
        if call_id is not None:
            payload["call_id"] = call_id
        return parse_receipt(self._request("POST", "/evidence", payload), evidence_key)

    def set_context(self, session_id: str, key: str, value: Any) -> None:
        """Set context ``key`` to the JSON value ``value`` for the session (``POST /context``)."""
        self._request("POST", "/context", {"session_id": session_id, "key": key, "value": value})

    def declare_dependency(self, session_id: str, tool_name: str, requires: Iterable[str]) -> None:
        """Declare that ``tool_name`` may run only after every tool in ``requires`` succeeded.

        The proxy enforces it like a policy ``requires`` gate for this session
        (``POST /dependencies``); repeated declarations for one tool add up. A single string counts as
        one tool name.
        """
        payload = {"session_id": session_id, "tool_name": tool_name, "requires": _names(requires)}
        self._request("POST", "/dependencies", payload)

    def get_session_state(self, session_id: str) -> SessionState:
        """Fetch what the proxy holds for the session (``GET /session/{id}/state``).

        Only unexpired evidence is listed; an unknown session comes back empty, not as an error.
        """
        return parse_session_state(
            self._request("GET", f"/session/{quote(session_id, safe='')}/state?view=full")
        )

    def health(self) -> bool:
        """Return True when ``GET /healthz`` answers ``{"status": "ok"}``.

        Raises ``HelioConnectionError`` / ``HelioTimeoutError`` when the sideband is unreachable and
        ``HelioHTTPError`` when it answers with an error status.
        """
        body = self._request("GET", "/healthz")
        return isinstance(body, dict) and cast("dict[str, object]", body).get("status") == "ok"

    def close(self) -> None:
        """Refuse further requests. Idempotent."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        token = "set" if self._token else "none"
        return f"HelioClient(sideband_url={self._proxy_url!r}, timeout={self._timeout}, token={token})"

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> object:
        """Send one request and return its decoded JSON body, or raise the matching ``HelioError``."""
        operation = f"{method} {path}"
        if self._closed:
            raise HelioError(f"{operation}: this HelioClient is closed")
        headers = {"accept": "application/json", "user-agent": _USER_AGENT}
        body = b""
        if payload is not None:
            body = _encode(payload, operation)
            headers["content-type"] = "application/json"
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        request = TransportRequest(method, self._proxy_url + path, headers, body, self._timeout)
        try:
            response = self._transport(request)
        except HelioError:
            raise
        except TimeoutError as error:
            raise HelioTimeoutError(f"{operation} timed out after {self._timeout}s") from error
        except OSError as error:
            raise HelioConnectionError(f"{operation}: cannot reach the Helio sideband: {error}") from error

        if not 200 <= response.status < 300:
            raise error_from_response(operation, response.status, response.body, url=self._proxy_url)
        if not response.body:
            return {}
        try:
            return json.loads(response.body)
        except ValueError as error:
            raise HelioProtocolError(
                f"{operation} answered with a body that is not JSON{not_sideband_hint(self._proxy_url)}",
                response.status,
            ) from error


def _resolve_token(token: str | None) -> str:
    resolved = os.environ.get(TOKEN_ENV_VAR, "") if token is None else token
    if any(not 0x21 <= ord(char) <= 0x7E for char in resolved):
        # Never echo the value: it is a secret.
        raise ValueError("the sideband token must be printable ASCII without spaces")
    return resolved


def _encode(payload: dict[str, Any], operation: str) -> bytes:
    try:
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as error:
        raise HelioSerializationError(f"{operation}: payload is not JSON-serializable: {error}") from error


def _names(names: Iterable[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)
