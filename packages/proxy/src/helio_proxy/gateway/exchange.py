"""What the governance core sees: an inbound MCP message and the reply to send back.

Transports build these; nothing here knows about ASGI, aiohttp or subprocesses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from helio_proxy.jsonrpc import Message, RequestId, dumps, error_payload

RELAYED_REQUEST_HEADERS = frozenset(
    {"mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name", "last-event-id", "authorization"}
)
"""Client headers always passed upstream (besides the operator's ``forward_headers``)."""

RELAYED_RESPONSE_HEADERS = frozenset({"mcp-session-id", "www-authenticate", "retry-after"})
"""Upstream response headers passed back to the client (``content-type`` is set by the proxy)."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from an agent, with the headers that matter for forwarding and identity."""

    message: Message
    headers: Mapping[str, str]
    """Lower-cased request headers."""
    accepts_sse: bool = True
    """Whether the client listed ``text/event-stream`` in ``Accept``."""
    transport_session_id: str | None = None
    """The session id a transport minted itself (legacy SSE's ``sessionId``): the session identity
    of last resort."""
    upstream_session_id: str | None = None
    """The upstream session a transport keeps on the client's behalf (legacy SSE): sent upstream as
    ``Mcp-Session-Id``, but never taken for the client's own header (session identity)."""
    disconnected: Callable[[], Awaitable[None]] | None = None
    """Returns once the client has gone away (HTTP transports). Watched only while a call is held
    (approval), so an ordinary call costs no watcher task."""
    agent_id: str | None = None
    """The agent the transport authenticated (``listen.auth``); ``None`` when agents are not
    authenticated."""
    peer: tuple[str, int] | None = None
    """The client's IP address and port, from the connection (HTTP transports; traces read it)."""
    network: str = "tcp"
    """The client's network transport in OpenTelemetry's words: ``tcp`` (HTTP), ``pipe`` (stdio)."""

    def upstream_headers(self) -> Mapping[str, str]:
        """The headers to forward: the client's, with the transport's upstream session in place."""
        if self.upstream_session_id is None:
            return self.headers
        return {**self.headers, "mcp-session-id": self.upstream_session_id}


class ClientDisconnected(Exception):
    """The client went away while its call was held; there is no one to answer (it is recorded)."""


@dataclass(frozen=True, slots=True)
class JsonReply:
    """A complete JSON answer (``body`` is written as is)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    payload: Any = None
    """The parsed body, when the proxy parsed it."""


@dataclass(frozen=True, slots=True)
class StreamReply:
    """An SSE answer: ``chunks`` are written in order as they arrive."""

    status: int
    chunks: AsyncIterator[bytes]
    headers: Mapping[str, str] = field(default_factory=dict[str, str])


@dataclass(frozen=True, slots=True)
class EmptyReply:
    """A status with no body (202 for notifications, DELETE results)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict[str, str])


Reply = JsonReply | StreamReply | EmptyReply


class UpstreamAnswer(Protocol):
    """What an upstream transport hands back for one message, in streamable-HTTP shape.

    HTTP upstreams return the real response; message-based ones (stdio, legacy SSE) build one:
    a ``text/event-stream`` answer streaming the request's messages, ``202`` for one-way
    messages, a JSON error body for session problems.
    """

    status: int
    content_type: str
    """Media type essence, lower-cased (``application/json``, ``text/event-stream``, ...)."""
    headers: dict[str, str]
    """The response headers relayed to the client (``mcp-session-id`` among them)."""

    async def read(self) -> bytes:
        """The whole body (releases the answer)."""
        ...

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; stopping early releases the answer."""
        ...

    def close(self) -> None:
        """Release the answer without reading it."""
        ...


class Upstream(Protocol):
    """One upstream MCP server as the gateway talks to it (streamable-HTTP shaped)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def post(self, client_headers: Mapping[str, str], body: bytes) -> UpstreamAnswer:
        """Send one JSON-RPC message (``UpstreamError`` when it could not be sent)."""
        ...

    async def open_stream(self, client_headers: Mapping[str, str]) -> UpstreamAnswer:
        """The server-to-client stream not tied to a request."""
        ...

    async def delete(self, client_headers: Mapping[str, str]) -> UpstreamAnswer:
        """End the client's session."""
        ...


def error_reply(
    request_id: RequestId | None,
    code: int,
    message: str,
    data: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> JsonReply:
    """A JSON-RPC error answer built by the proxy."""
    payload = error_payload(request_id, code, message, data)
    return JsonReply(status=status, body=dumps(payload), payload=payload)
