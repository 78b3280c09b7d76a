"""Message-based upstreams (a stdio child, a legacy SSE connection) as the gateway's :class:`Upstream`.

A message-based upstream has only a connection that carries messages both ways; the messages are
handed to the gateway as they come (no framing to add or remove), and
:class:`MessageUpstream` keeps the sessions:

* ``initialize`` opens a new **session**: the proxy mints an ``Mcp-Session-Id`` (returned in the
  answer's headers) and opens one upstream connection (:class:`Channel`) for it alone. Two
  downstream clients therefore never see each other's messages, and the ids the server uses for
  its own requests (sampling, elicitation, roots) are only ever seen by the client whose session
  they belong to: they pass through unchanged and cannot collide across sessions.
* any other message must name a known session: no ``Mcp-Session-Id`` answers ``400``, an unknown
  or ended one ``404`` (the spec's "start a new session"), both with a JSON-RPC error body.
* a request (:meth:`MessageUpstream.send`) answers with everything the server sends about it,
  ending with its response: the progress notifications carrying its ``progressToken``, and the
  notifications and requests the server sends while it is the only request in flight. If the
  first thing the server sends is the response itself, the answer is that message alone (JSON to
  an HTTP client); otherwise a stream.
* a notification, or a client's response to a server request (:meth:`~MessageUpstream.notify`),
  answers ``202`` once written.
* :meth:`~MessageUpstream.listen` (``GET``) carries the server's messages that belong to no request
  in flight (``list_changed``, notifications and requests sent between requests, and those sent
  while several requests are in flight, which cannot be attributed). Until a client opens it they
  are kept, up to :data:`DEFAULT_BACKLOG`; without it, they go to the oldest request in flight.
* :meth:`~MessageUpstream.end_session` (``DELETE``) ends the session and its connection.

A channel that is lost (the child died) fails every request in flight with ``-32603``
``failure_class: upstream_exited`` and is reconnected by its :class:`RestartPolicy`; the session
then replays the client's ``initialize`` and ``notifications/initialized`` on the fresh
connection (answers swallowed), so the client carries on without noticing. Messages sent while it
reconnects wait for it (up to ``upstream.connect_timeout``); once it has given up they fail at
once with ``failure_reason: not_running`` (never delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Final

from helio_proxy.config.upstream import UpstreamConfig
from helio_proxy.errors import UpstreamError, UpstreamExited
from helio_proxy.gateway.exchange import Answer, MessageStream, SingleAnswer, StatusAnswer, UpstreamMessage
from helio_proxy.jsonrpc import INVALID_REQUEST, Message, RequestId, dumps, error_payload
from helio_proxy.transports.upstream.session import MessageSession
from helio_proxy.transports.upstream.supervised import (
    Channel,
    ChannelEvents,
    ChannelState,
    RestartPolicy,
    not_running,
)

log = logging.getLogger("helio_proxy.upstream")

DEFAULT_BACKLOG: Final = 1000
"""Unattributed server messages kept per session until a ``GET`` stream takes them."""

DEFAULT_MAX_SESSIONS: Final = 64
"""Sessions (upstream connections) open at once; one more ``initialize`` answers ``503``."""

DEFAULT_SESSION_IDLE_SECONDS: Final = 1800.0
"""A session with nothing in flight, no open stream and no traffic for this long is closed."""

SWEEP_INTERVAL_SECONDS: Final = 60.0

SESSION_HEADER: Final = "mcp-session-id"


def _refusal(status: int, request_id: RequestId | None, message: str) -> StatusAnswer:
    payload = error_payload(request_id, INVALID_REQUEST, message)
    return StatusAnswer(status, dumps(payload), {}, payload)


def _session_headers(session: MessageSession) -> dict[str, str]:
    return {SESSION_HEADER: session.id}


class MessageUpstream(ABC):
    """The gateway's upstream interface over per-session message channels (see the module docs)."""

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        policy: RestartPolicy | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS,
        backlog: int = DEFAULT_BACKLOG,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.url = config.url
        self.policy = policy or RestartPolicy()
        self.request_timeout = float(config.request_timeout.seconds)
        self.connect_timeout = float(config.connect_timeout.seconds)
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self.backlog = backlog
        self.max_response_bytes = config.max_response_bytes
        self.clock = clock
        self.sleep = sleep
        self.sessions: dict[str, MessageSession] = {}
        self.on_stopped: Callable[[str, str], None] | None = None
        """Called with (session id, reason) when a session's channel gives up restarting."""
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()

    @property
    def label(self) -> str:
        """How logs name this upstream."""
        return self.config.name or self.url.split("://", 1)[-1]

    @abstractmethod
    def open_channel(self, events: ChannelEvents) -> Channel:
        """A new, not yet opened, channel reporting to ``events``."""

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="helio-session-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        sessions, self.sessions = list(self.sessions.values()), {}
        closing = UpstreamExited("the proxy is shutting down", failure_reason="session_closed")
        await asyncio.gather(*(session.end(closing) for session in sessions), *self._background)

    def stopped(self, session: MessageSession, reason: str) -> None:
        if self.on_stopped is not None:
            self.on_stopped(session.id, f"upstream {self.label}: {reason}")

    async def _sweep(self) -> None:
        while True:
            await self.sleep(SWEEP_INTERVAL_SECONDS)
            await self.expire_idle()

    async def expire_idle(self) -> list[str]:
        """Close sessions idle past ``idle_seconds``; return their ids."""
        now = self.clock()
        expired = [s for s in self.sessions.values() if s.idle and now - s.last_active >= self.idle_seconds]
        for session in expired:
            self.sessions.pop(session.id, None)
            log.info("[%s] session %s expired after %gs idle", self.label, session.id[:8], self.idle_seconds)
            await session.end(UpstreamExited("session expired", failure_reason="session_closed"))
        return [s.id for s in expired]

    def _lookup(
        self, headers: Mapping[str, str], request_id: RequestId | None
    ) -> MessageSession | StatusAnswer:
        session_id = headers.get(SESSION_HEADER)
        if not session_id:
            return _refusal(
                400,
                request_id,
                "Bad Request: missing Mcp-Session-Id header (send initialize first to open a session)",
            )
        session = self.sessions.get(session_id)
        if session is None or session.ended:
            return _refusal(404, request_id, "Session not found: initialize a new session")
        return session

    async def send(self, message: Message, client_headers: Mapping[str, str]) -> Answer:
        """Send one request into its session (``initialize`` opens one)."""
        assert message.id is not None
        if message.method == "initialize":
            return await self._initialize(message)
        found = self._lookup(client_headers, message.id)
        if isinstance(found, StatusAnswer):
            return found
        return await self._request(found, message)

    async def notify(self, message: Message, client_headers: Mapping[str, str]) -> StatusAnswer:
        """Write a notification or a client's response into its session: ``202`` once written."""
        found = self._lookup(client_headers, None)
        if isinstance(found, StatusAnswer):
            return found
        session = found
        await session.send(message.raw)
        if message.method == "notifications/initialized":
            session.note_initialized()
        elif message.method == "notifications/cancelled" and message.params is not None:
            session.cancel(message.params.get("requestId"))
        return StatusAnswer(202, headers=_session_headers(session))

    async def _initialize(self, message: Message) -> Answer:
        if len(self.sessions) >= self.max_sessions:
            return _refusal(
                503, message.id, f"too many sessions open ({self.max_sessions}); end one (DELETE) and retry"
            )
        session = MessageSession(secrets.token_urlsafe(24), self)
        channel = self.open_channel(session)
        session.channel = channel
        await channel.open()  # UpstreamError when it cannot start: the client gets -32603
        self.sessions[session.id] = session
        session.note_handshake(message.raw)
        try:
            # A fresh child answers its first message only once it has started: allow for that too.
            startup = self.connect_timeout + self.request_timeout
            return await self._request(session, message, first_within=startup)
        except BaseException:  # failed or cancelled (a client gone, the primer's boot wait over)
            # In the background: a cancelled caller must not wait for the child to stop.
            self._end_later(
                session, UpstreamExited("initialize did not complete", failure_reason="session_closed")
            )
            raise

    async def _request(
        self, session: MessageSession, message: Message, *, first_within: float | None = None
    ) -> SingleAnswer | MessageStream:
        assert message.id is not None
        pending = session.begin(message.id, message.params)
        try:
            await session.send(message.raw)
            first, final = await pending.next(first_within or self.request_timeout)
        except BaseException:
            session.forget(pending)
            raise
        headers = _session_headers(session)
        if final:
            session.forget(pending)
            return SingleAnswer.of(first, headers)

        async def messages() -> AsyncGenerator[UpstreamMessage, None]:
            yield first
            while True:
                received, is_response = await pending.next(self.request_timeout)
                yield received
                if is_response:
                    return

        return MessageStream(messages(), headers, release=lambda: session.forget(pending))

    async def listen(self, client_headers: Mapping[str, str]) -> MessageStream | StatusAnswer:
        """The session's server-to-client messages that belong to no request (one stream at a time)."""
        found = self._lookup(client_headers, None)
        if isinstance(found, StatusAnswer):
            return found
        session = found
        stream = session.attach_stream()
        if stream is None:
            return _refusal(409, None, "Conflict: this session already has a GET stream open")

        async def messages() -> AsyncGenerator[UpstreamMessage, None]:
            while (received := await stream.get()) is not None:
                yield received

        return MessageStream(
            messages(), _session_headers(session), release=lambda: session.detach_stream(stream)
        )

    async def end_session(self, client_headers: Mapping[str, str]) -> StatusAnswer:
        """End the session: its channel (child process) is closed."""
        found = self._lookup(client_headers, None)
        if isinstance(found, StatusAnswer):
            return found
        self._end_later(
            found, UpstreamExited("the client ended the session", failure_reason="session_closed")
        )
        return StatusAnswer(200)

    def _end_later(self, session: MessageSession, error: UpstreamError) -> None:
        """Forget the session now; stop its channel (the child gets seconds to exit) in the background."""
        self.sessions.pop(session.id, None)
        ending = asyncio.ensure_future(session.end(error))
        self._background.add(ending)
        ending.add_done_callback(self._background.discard)


__all__ = [
    "Channel",
    "ChannelEvents",
    "ChannelState",
    "MessageSession",
    "MessageUpstream",
    "RestartPolicy",
    "UpstreamError",
    "not_running",
]
