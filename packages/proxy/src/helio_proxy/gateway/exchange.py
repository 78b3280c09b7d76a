"""What the governance core sees: MCP messages in, MCP messages back.

An agent's message arrives as an :class:`Inbound`; the gateway's answer is a :class:`Reply`. An
upstream (:class:`Upstream`) is sent parsed messages and answers with :class:`UpstreamMessage`
values: the response alone (:class:`SingleAnswer`), the messages until the response
(:class:`MessageStream`), or a status the client gets as it is (:class:`StatusAnswer`).
Transports build and frame these at the edges (HTTP and SSE, stdio lines, legacy SSE); nothing
here knows about ASGI, HTTP clients or subprocesses, and no message is parsed twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from helio_proxy.jsonrpc import Message, RequestId, dumps, error_payload, is_response_for, read_json
from helio_proxy.values import value

_UNPARSED: Any = object()


def _no_headers() -> dict[str, str]:
    # A plain function: a ``dict[str, str]`` alias as the factory costs ~0.2 µs per reply more
    # (calling a generic alias tries, and fails, to set ``__orig_class__`` on the new dict).
    return {}


RELAYED_REQUEST_HEADERS = frozenset(
    {"mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name", "last-event-id", "authorization"}
)
"""Client headers always passed upstream (besides the operator's ``forward_headers``)."""

RELAYED_RESPONSE_HEADERS = frozenset({"mcp-session-id", "www-authenticate", "retry-after"})
"""Upstream response headers passed back to the client (``content-type`` is set by the proxy)."""


@value
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


@value
class JsonReply:
    """A complete JSON answer (``body`` is written as is)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=_no_headers)
    payload: Any = None
    """The parsed body, when the proxy parsed it."""


@dataclass(frozen=True, slots=True)
class EmptyReply:
    """A status with no body (202 for notifications, DELETE results)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=_no_headers)


class UpstreamMessage:
    """One message the upstream sent: its bytes, forwarded untouched, and its JSON parsed once,
    when first asked for (a flood of notifications nobody inspects is never parsed).

    ``event_id`` is the SSE event id it arrived with (a client resumes a stream with it as
    ``Last-Event-ID``), ``retry`` the reconnection delay its event set (milliseconds). A message
    with empty ``raw`` carries only those: the event a server sends to make its stream resumable.
    """

    __slots__ = ("_payload", "event_id", "raw", "retry")

    def __init__(
        self, raw: bytes, event_id: str | None = None, payload: Any = _UNPARSED, *, retry: int | None = None
    ) -> None:
        self.raw = raw
        self.event_id = event_id
        self.retry = retry
        self._payload = payload

    @property
    def payload(self) -> Any:
        """The message as JSON (``None`` when it is not JSON)."""
        if self._payload is _UNPARSED:
            self._payload = read_json(self.raw) if self.raw else None
        return self._payload

    def answers(self, request_id: RequestId) -> bool:
        """Whether this is the JSON-RPC response to ``request_id`` (only a message that has an
        ``"id"`` at all is parsed)."""
        if self._payload is _UNPARSED and b'"id"' not in self.raw:
            return False
        return is_response_for(self.payload, request_id)

    def replaced(self, payload: dict[str, Any]) -> UpstreamMessage:
        """This message with another body (the proxy's version of an answer), its event fields kept."""
        return UpstreamMessage(dumps(payload), self.event_id, payload, retry=self.retry)

    def __repr__(self) -> str:
        return f"UpstreamMessage({self.raw[:80]!r}, event_id={self.event_id!r})"


class MessageStream:
    """The upstream's messages about one request, ending with its response (SSE over HTTP: a
    client that accepts a stream gets one); or, from :meth:`Upstream.listen`, its server-to-client
    messages that belong to no request.

    Iterate it once; stopping early (or :meth:`close`) releases what the upstream holds for it.
    """

    __slots__ = ("_messages", "_release", "headers")

    def __init__(
        self,
        messages: AsyncIterator[UpstreamMessage],
        headers: Mapping[str, str] | None = None,
        *,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        """Headers relayed to the client (``mcp-session-id`` among them)."""
        self._messages: AsyncIterator[UpstreamMessage] | None = messages
        self._release = release

    async def __aiter__(self) -> AsyncIterator[UpstreamMessage]:
        messages, self._messages = self._messages, None
        if messages is None:
            return
        try:
            async for message in messages:
                yield message
        finally:
            aclose = getattr(messages, "aclose", None)
            if aclose is not None:
                await aclose()
            self.close()

    def close(self) -> None:
        """Release the answer without reading it (or the rest of it)."""
        self._messages = None
        release, self._release = self._release, None
        if release is not None:
            release()


class SingleAnswer:
    """The upstream answered with its response alone (JSON over HTTP, or a message server whose
    first message about the request was its response): given to the client as JSON.

    :meth:`read` it once; :meth:`close` releases it unread.
    """

    __slots__ = ("_read", "_release", "detail", "headers")

    def __init__(
        self,
        read: Callable[[], Awaitable[UpstreamMessage]],
        headers: Mapping[str, str] | None = None,
        *,
        detail: Mapping[str, Any] | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        """Headers relayed to the client (``mcp-session-id`` among them)."""
        self.detail: Mapping[str, Any] = detail if detail is not None else {}
        """What a failure of this answer reports about how it arrived (``upstream_http_status``)."""
        self._read = read
        self._release = release

    @classmethod
    def of(cls, message: UpstreamMessage, headers: Mapping[str, str] | None = None) -> SingleAnswer:
        """An answer already received."""

        async def read() -> UpstreamMessage:
            return message

        return cls(read, headers)

    async def read(self) -> UpstreamMessage:
        """The response (the transport's failures raise :class:`~helio_proxy.errors.UpstreamError`)."""
        try:
            return await self._read()
        finally:
            self.close()

    def close(self) -> None:
        """Release the answer (a no-op once it has been read)."""
        release, self._release = self._release, None
        if release is not None:
            release()


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    """An answer that carries no messages for the proxy to relay: the status (and body) the client
    gets as they are: a session expired (``404``), an auth challenge (``401`` with
    ``WWW-Authenticate``), no server stream (``405``), a one-way message taken (``202``), a session
    ended. A server error (``5xx``) to :meth:`Upstream.listen` or :meth:`Upstream.end_session` is
    answered ``502``."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=_no_headers)
    payload: Any = None
    """The body as JSON (``None`` when it is not JSON)."""


Answer = SingleAnswer | MessageStream | StatusAnswer
"""What an upstream answers a request with."""


@dataclass(frozen=True, slots=True)
class StreamReply:
    """A streamed answer: ``messages`` are delivered in order as they arrive (the downstream
    transport frames them: SSE events over HTTP, lines over stdio)."""

    status: int
    messages: AsyncIterator[UpstreamMessage]
    headers: Mapping[str, str] = field(default_factory=_no_headers)


Reply = JsonReply | StreamReply | EmptyReply


class Upstream(Protocol):
    """One upstream MCP server as the gateway talks to it, in MCP terms.

    The transport frames and unframes at its edge (HTTP and SSE, stdio lines, legacy SSE); the
    gateway hands it parsed messages and gets messages back. ``client_headers`` are the client's
    (lower-cased); HTTP upstreams relay some of them, message upstreams read the session id.
    Failures raise :class:`~helio_proxy.errors.UpstreamError`.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, message: Message, client_headers: Mapping[str, str]) -> Answer:
        """Send one request; its answer: the response alone, the messages until its response, or a
        status."""
        ...

    async def notify(self, message: Message, client_headers: Mapping[str, str]) -> StatusAnswer:
        """Send a notification, or the client's response to a server request (``2xx``: taken)."""
        ...

    async def listen(self, client_headers: Mapping[str, str]) -> MessageStream | StatusAnswer:
        """The server-to-client stream of the client's session (messages tied to no request)."""
        ...

    async def end_session(self, client_headers: Mapping[str, str]) -> StatusAnswer:
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
