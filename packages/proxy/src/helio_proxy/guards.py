"""Request checks shared by every listener (agent port, dashboard, sideband): Host (DNS
rebinding), Origin, Content-Type.

Each check returns ``None`` when the request may pass, or the reason it may not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


_VISIBLE_ASCII: Final = re.compile(r"[\x20-\x7e]*")
MCP_PROTOCOL_HEADERS: Final = ("mcp-session-id", "mcp-protocol-version", "last-event-id")
"""Headers of the MCP protocol the proxy relays upstream as they are."""


def protocol_header_problem(headers: dict[str, str]) -> str | None:
    """A relayed MCP header whose value is not printable ASCII (the specification allows only
    visible ASCII in a session id; an upstream may fail on anything else), or ``None``."""
    for name in MCP_PROTOCOL_HEADERS:
        value = headers.get(name)
        if value is not None and _VISIBLE_ASCII.fullmatch(value) is None:
            return f"the {name} header must be printable ASCII"
    return None


def is_loopback(bind_host: str) -> bool:
    """Whether a bind address (or host name) is a loopback one."""
    return bind_host.lower() in LOOPBACK_NAMES or bind_host.startswith("127.")


class HostGuard:
    """Rejects ``Host`` headers a browser could only send after DNS rebinding.

    A loopback-bound listener accepts loopback names and the ``allowed`` ones; a listener on any
    other address accepts the ``allowed`` ones, or any host when no list is given.
    """

    def __init__(self, bind_host: str, allowed: Iterable[str] | None) -> None:
        self._allowed = {a.lower() for a in allowed} if allowed is not None else None
        self._loopback = is_loopback(bind_host)

    def check(self, host_header: str | None) -> str | None:
        if self._allowed is None and not self._loopback:
            return None
        if not host_header:
            return "missing Host header"
        name = _host_name(host_header)
        if self._loopback and name in LOOPBACK_NAMES:
            return None
        if self._allowed is not None:
            if host_header.lower() in self._allowed or name in self._allowed:
                return None
            return f"Host {host_header!r} is not in listen.allowed_hosts"
        return f"Host {host_header!r} is not a loopback name (set listen.allowed_hosts to allow it)"


_LOOPBACK_ORIGIN = re.compile(r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$")


class OriginGuard:
    """Requests that carry an ``Origin`` must name an allowlisted one (exact match), or a loopback
    one when the listener is bound to loopback (what the official MCP SDKs accept)."""

    def __init__(self, allowed: Iterable[str], bind_host: str | None = None) -> None:
        self._allowed = frozenset(o.lower().rstrip("/") for o in allowed)
        self._loopback = bind_host is not None and is_loopback(bind_host)

    def check(self, origin: str | None) -> str | None:
        if origin is None:
            return None
        lowered = origin.lower().rstrip("/")
        if lowered in self._allowed:
            return None
        if self._loopback and _LOOPBACK_ORIGIN.match(lowered):
            return None
        return f"Origin {origin!r} is not in listen.allowed_origins"


def content_type_essence(value: str | None) -> str:
    """``application/json; charset=utf-8`` → ``application/json``."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


_ACCEPTS_SEEN: Final = 64
"""``Accept`` values whose answer :func:`accepts_event_stream` keeps (a client sends the same one on
every request); past this many, others are worked out each time."""
_accepts: dict[str, bool] = {}


def accepts_event_stream(accept: str | None) -> bool:
    """Whether ``Accept`` explicitly lists ``text/event-stream`` (``*/*`` alone does not count)."""
    if not accept:
        return False
    known = _accepts.get(accept)
    if known is None:
        known = any(
            part.split(";", 1)[0].strip().lower() == "text/event-stream" for part in accept.split(",")
        )
        if len(_accepts) < _ACCEPTS_SEEN:
            _accepts[accept] = known
    return known
