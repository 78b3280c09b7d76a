"""Errors raised by the proxy.

::

    HelioProxyError                 root; carries an exit code for the CLI
    ├── ConfigError                 helio.yaml could not be loaded (file, line, dotted path)
    ├── StartupError                a listener, store or upstream could not be set up
    └── UpstreamError               the upstream failed a request: failure_class upstream_forward_error
        ├── UpstreamUnavailable     connection refused / reset (failure_reason says which)
        ├── UpstreamTimeout         no complete answer within upstream.request_timeout of the send (timeout)
        ├── UpstreamExited          a message-based upstream (stdio child) died or is down: upstream_exited
        ├── UpstreamProtocolError   not a JSON-RPC response for the request: upstream_invalid_jsonrpc
        │                           or upstream_id_mismatch
        └── UpstreamTooLarge        the answer passed upstream.max_response_bytes: response_too_large

Governance decisions are values, not exceptions (see ``helio_proxy.gateway``); only the edge
turns them into JSON-RPC errors.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final


class HelioProxyError(Exception):
    """Root of the proxy's errors."""

    exit_code: ClassVar[int] = 1


class ConfigError(HelioProxyError):
    """The config file is missing, unreadable or invalid."""

    def __init__(
        self, message: str, *, source: str | None = None, line: int | None = None, path: str | None = None
    ):
        self.message = message
        self.source = source
        self.line = line
        self.path = path
        super().__init__(self.render())

    def render(self) -> str:
        where = self.source or "config"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class StartupError(HelioProxyError):
    """Something the proxy needs at startup could not be set up (port in use, unwritable file...)."""

    exit_code: ClassVar[int] = 3


UNDELIVERED_REASONS: Final = frozenset(
    {
        "connection_refused",
        "not_started",
        "not_running",
        "spawn_failed",
        "credential_unavailable",
        "consent_required",
    }
)
"""``failure_reason`` values meaning the request never left the proxy."""


class UpstreamError(HelioProxyError):
    """An upstream request failed; rendered as JSON-RPC -32603 with ``data.failure_class``."""

    failure_class: ClassVar[str] = "upstream_forward_error"

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    @property
    def delivered(self) -> bool:
        """Whether the upstream may have received the request (and run it).

        Only failures before anything was sent (refused connection, client not started, a stdio
        child that is not running) count as undelivered; limits refund those calls.
        """
        return self.data.get("failure_reason") not in UNDELIVERED_REASONS


class UpstreamUnavailable(UpstreamError):
    """Connection refused, reset or lost (``failure_reason`` says which)."""


class UpstreamTimeout(UpstreamError):
    """No complete answer within ``upstream.request_timeout`` of the send (``failure_reason: timeout``)."""


class UpstreamExited(UpstreamError):
    """The upstream process (or connection) of a message-based transport is gone.

    ``failure_reason: exited`` for requests in flight when it died (they may have run);
    ``not_running`` when a message could not be sent because it was down (never delivered).
    """

    failure_class: ClassVar[str] = "upstream_exited"


class UpstreamProtocolError(UpstreamError):
    """The upstream answered with something that is not a matching JSON-RPC response."""

    failure_class: ClassVar[str] = "upstream_invalid_jsonrpc"

    def __init__(self, message: str, *, failure_class: str | None = None, **data: Any) -> None:
        super().__init__(message, **data)
        if failure_class is not None:
            self.failure_class = failure_class  # pyright: ignore[reportAttributeAccessIssue]


class UpstreamTooLarge(UpstreamError):
    """The upstream's answer to one request passed ``upstream.max_response_bytes`` (not read further)."""

    failure_class: ClassVar[str] = "response_too_large"

    def __init__(self, limit: int, what: str = "answer") -> None:
        super().__init__(
            f"upstream {what} is larger than max_response_bytes ({limit} bytes)",
            failure_reason="max_response_bytes",
            max_response_bytes=limit,
        )
