"""Agent-facing legacy HTTP+SSE (MCP 2024-11-05): ``GET /sse`` and ``POST /messages?sessionId=``.

``GET /sse`` opens a stream whose first event is ``endpoint``, naming where to POST
(``/messages?sessionId=<id>``, the id random and minted here). Every message POSTed there is
answered ``202 Accepted`` at once; the answers (responses, the server's notifications and
requests that come with them) arrive later as ``message`` events on the stream. Requests run
concurrently, so a slow tool call never holds up the others.

Each SSE session is one upstream session: the ``Mcp-Session-Id`` the upstream assigns on
``initialize`` is kept by the SSE session and sent with its later messages, and once the session
exists its upstream server-to-client stream (``GET``) is relayed to the SSE stream too. Two SSE
clients therefore never see each other's messages. When the stream ends, the upstream session is
ended (``DELETE``).

Limits: at most ``listen.max_sse_sessions`` open streams per mount (``503`` beyond); a stream
nobody has been able to write to for :data:`STALE_AFTER_SECONDS` (a client that stopped
reading, or vanished without closing) is closed by a sweep every :data:`SWEEP_INTERVAL_SECONDS`;
every stream is closed on shutdown. A POST must carry the ``Authorization`` header the stream
was opened with (none if none): a session id alone does not let another credential in. With
``listen.auth`` the listener has checked (and removed) that header, and a POST must come from the
agent that opened the stream instead (a refreshed token of the same agent is fine).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final, cast
from urllib.parse import parse_qs

from helio_proxy.config.sections import DEFAULT_MAX_SSE_SESSIONS
from helio_proxy.gateway import Gateway, Inbound
from helio_proxy.gateway.exchange import EmptyReply, JsonReply, error_reply
from helio_proxy.gateway.messages import reply_messages
from helio_proxy.guards import content_type_essence
from helio_proxy.jsonlimits import DEFAULT_LIMITS, JsonLimits, body_limit_data
from helio_proxy.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    EnvelopeError,
    Kind,
    Message,
    dumps,
    parse,
)
from helio_proxy.transports.downstream.asgi import (
    HEARTBEAT,
    SSE_HEADERS,
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    StreamTracker,
    peer,
    read_body,
    send_bytes,
)
from helio_proxy.transports.sse import encode_event

log = logging.getLogger("helio_proxy.transports.sse")

SSE_TRANSPORT: Final = "sse"
"""The transport label of a legacy ``GET /sse`` stream (see :data:`.asgi.StreamTracker`)."""

MAX_SSE_SESSIONS: Final = DEFAULT_MAX_SSE_SESSIONS
"""Open SSE streams per mount; one more is refused with ``503`` (the reference's cap)."""

STALE_AFTER_SECONDS: Final = 90.0
"""A stream that could not be written to for this long is closed by the sweep."""

SWEEP_INTERVAL_SECONDS: Final = 60.0
"""How often stale streams are looked for (so one is reclaimed within about 150 s)."""

HEARTBEAT_SECONDS: Final = 30.0
"""An idle stream gets an SSE comment this often: it shows the stream is still read, and keeps
intermediaries from cutting it."""

SESSION_QUEUE_LIMIT: Final = 1024
"""Events waiting to be written to one stream; a client that falls further behind is disconnected."""

UPSTREAM_SESSION_HEADERS: Final = frozenset({"mcp-session-id", "mcp-protocol-version", "last-event-id"})
"""Client headers the SSE session sets itself on the upstream leg (the client's are dropped)."""

DELETE_TIMEOUT_SECONDS: Final = 5.0
"""How long ending a closed stream's upstream session may take."""

STREAM_RETRIES: Final = 5
"""Times the upstream's server-to-client stream is reopened after it ends, per SSE session."""


class SseSession:
    """One open ``GET /sse`` stream and the upstream session behind it."""

    def __init__(
        self,
        session_id: str,
        credential: str | None,
        headers: Mapping[str, str],
        now: float,
        agent_id: str | None = None,
    ) -> None:
        self.id = session_id
        self.agent_id = agent_id
        """The authenticated agent that opened the stream (``listen.auth``); every POST must be it."""
        self.credential = credential
        """The ``Authorization`` the stream was opened with; every POST must present the same."""
        self.stream_headers = {k: v for k, v in headers.items() if k not in UPSTREAM_SESSION_HEADERS}
        """The GET's headers, used for the upstream's server-to-client stream."""
        self.upstream_session_id: str | None = None
        """The ``Mcp-Session-Id`` the upstream assigned on ``initialize``."""
        self.protocol_version: str | None = None
        """The protocol version the upstream agreed to on ``initialize``."""
        self.last_write = now
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(SESSION_QUEUE_LIMIT)
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.stream_started = False
        self.ended = asyncio.Event()
        """Set once the stream has ended and the session is forgotten."""

    def client_headers(self, client: Mapping[str, str]) -> dict[str, str]:
        """A POST's headers as the gateway should see them (the session's protocol version added)."""
        headers = {k: v for k, v in client.items() if k not in UPSTREAM_SESSION_HEADERS}
        if self.protocol_version is not None:
            headers["mcp-protocol-version"] = self.protocol_version
        return headers

    def session_headers(self) -> dict[str, str]:
        """Headers for the upstream session's own requests (its stream, its ``DELETE``)."""
        headers = self.client_headers(self.stream_headers)
        if self.upstream_session_id is not None:
            headers["mcp-session-id"] = self.upstream_session_id
        return headers

    def allows(self, authorization: str | None, agent_id: str | None = None) -> bool:
        if agent_id != self.agent_id:
            return False
        if self.credential is None or authorization is None:
            return self.credential is None and authorization is None
        return hmac.compare_digest(self.credential.encode(), authorization.encode())

    def deliver(self, raw: bytes) -> None:
        """Queue one JSON-RPC message as a ``message`` event (dropped once the stream is closed)."""
        if self.closed.is_set():
            return
        if b"\n" in raw or b"\r" in raw:  # an event's data is one line: re-serialize pretty JSON
            try:
                raw = dumps(json.loads(raw))
            except ValueError:
                log.warning("SSE session %s: dropped an upstream message that is not JSON", self.id)
                return
        try:
            self.queue.put_nowait(encode_event(raw))
        except asyncio.QueueFull:
            log.warning("SSE session %s fell %d events behind; closing it", self.id, SESSION_QUEUE_LIMIT)
            self.close("the client stopped reading")

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()


async def _reject(
    send: Send,
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    reply = error_reply(None, INVALID_REQUEST, message, data, status=status)
    await send_bytes(send, status, reply.body, headers or {}, "application/json")


class LegacySseEndpoint:
    """``GET /sse`` + ``POST /messages`` in front of one gateway (one mount)."""

    def __init__(
        self,
        gateway: Gateway,
        messages_path: str,
        *,
        max_body: int,
        limits: JsonLimits = DEFAULT_LIMITS,
        max_sessions: int = MAX_SSE_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
        streams: StreamTracker | None = None,
    ) -> None:
        self.gateway = gateway
        self.messages_path = messages_path
        self.max_body = max_body
        self.limits = limits
        self.max_sessions = max_sessions
        """The session cap (a plain attribute, so a test can lower it)."""
        self.clock = clock
        self.streams = streams
        """Told when a stream opens and ends (metrics)."""
        self.sessions: dict[str, SseSession] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._cleanups: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- GET /sse -----------------------------------------------------------------------------

    async def open(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        *,
        agent_id: str | None = None,
    ) -> None:
        """Serve one SSE stream until the client leaves, the sweep closes it, or shutdown."""
        if self._closing:
            await _reject(send, 503, "the proxy is shutting down")
            return
        if len(self.sessions) >= self.max_sessions:
            await _reject(
                send,
                503,
                f"too many open SSE sessions ({self.max_sessions}); close one or try again later",
                {"retry-after": "5"},
                {"reason": "capacity_exhausted", "limit": "max_sse_sessions", "max": self.max_sessions},
            )
            return
        session = SseSession(
            secrets.token_hex(16), headers.get("authorization"), headers, self.clock(), agent_id
        )
        self.sessions[session.id] = session
        if self.streams is not None:
            self.streams(SSE_TRANSPORT, 1)
        self._ensure_sweeper()
        endpoint = f"{scope.get('root_path', '')}{self.messages_path}?sessionId={session.id}"
        start_headers = [(b"content-type", b"text/event-stream")]
        start_headers += [(k.encode(), v.encode()) for k, v in SSE_HEADERS.items()]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": start_headers})
            await send(
                {
                    "type": "http.response.body",
                    "body": encode_event(endpoint.encode(), event="endpoint"),
                    "more_body": True,
                }
            )
            session.last_write = self.clock()
            ended_by_client = await self._pump(session, receive, send)
            if not ended_by_client:
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._end(session)

    async def _pump(self, session: SseSession, receive: Receive, send: Send) -> bool:
        """Write queued events until the session closes; ``True`` if the client went away."""

        async def write() -> None:
            while True:
                try:
                    async with asyncio.timeout(HEARTBEAT_SECONDS):
                        chunk = await session.queue.get()
                except TimeoutError:
                    chunk = HEARTBEAT
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                session.last_write = self.clock()

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        writer = asyncio.ensure_future(write())
        watcher = asyncio.ensure_future(disconnected())
        closer = asyncio.ensure_future(session.closed.wait())
        try:
            await asyncio.wait({writer, watcher, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, watcher, closer):
                task.cancel()
            for task in (writer, watcher, closer):
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
        return watcher.done() and not watcher.cancelled()

    def _end(self, session: SseSession) -> None:
        """Forget a session whose stream ended: stop its work and end its upstream session."""
        session.close(session.close_reason or "the client closed the stream")
        if self.sessions.pop(session.id, None) is not None and self.streams is not None:
            self.streams(SSE_TRANSPORT, -1)
        session.ended.set()
        for task in list(session.tasks):
            task.cancel()
        if session.upstream_session_id is not None:
            task = asyncio.get_running_loop().create_task(self._delete_upstream(session))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    async def _delete_upstream(self, session: SseSession) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DELETE_TIMEOUT_SECONDS):
                await self.gateway.end_session(session.session_headers())

    # -- POST /messages -----------------------------------------------------------------------

    async def post(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        *,
        agent_id: str | None = None,
    ) -> None:
        """Take one JSON-RPC message for a session: ``202``, and the answers follow on its stream."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        ids = query.get("sessionId") or query.get("session_id")
        if not ids:
            await _reject(send, 400, "sessionId query parameter is required")
            return
        session = self.sessions.get(ids[0])
        if (
            session is None
            or session.closed.is_set()
            or not session.allows(headers.get("authorization"), agent_id)
        ):
            await _reject(
                send, 404, "unknown or closed SSE session; open a new one with GET on the SSE endpoint"
            )
            return
        essence = content_type_essence(headers.get("content-type"))
        if essence != "application/json":
            await _reject(send, 415, f"Content-Type must be application/json (got {essence or 'none'})")
            return
        declared = headers.get("content-length")
        too_large = f"request body is larger than {self.max_body} bytes"
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _reject(send, 413, too_large, data=body_limit_data(self.max_body))
            return
        try:
            raw = await read_body(receive, self.max_body)
        except BodyTooLarge:
            await _reject(send, 413, too_large, data=body_limit_data(self.max_body))
            return
        except ConnectionResetError:
            return
        try:
            message = parse(raw, self.limits)
        except EnvelopeError as exc:
            if exc.reason is not None:
                client = session.client_headers(headers)
                reply = await self.gateway.refuse(
                    exc, client, transport_session_id=session.id, agent_id=session.agent_id
                )
            else:
                reply = error_reply(exc.request_id, exc.code, str(exc), status=400)
            await send_bytes(send, 400, reply.body, {}, "application/json")
            return
        session.spawn(self._handle(session, message, headers, peer(scope)))
        await send_bytes(send, 202, b"", {}, None)

    async def _handle(
        self,
        session: SseSession,
        message: Message,
        headers: dict[str, str],
        client: tuple[str, int] | None = None,
    ) -> None:
        inbound = Inbound(
            message=message,
            headers=session.client_headers(headers),
            accepts_sse=True,
            transport_session_id=session.id,
            upstream_session_id=session.upstream_session_id,
            agent_id=session.agent_id,
            peer=client,
        )
        request_id = message.id if message.kind is Kind.REQUEST else None
        initialize = request_id is not None and message.method == "initialize"
        answered = False
        status: int | None = None
        try:
            reply = await self.gateway.handle(inbound)
            status = reply.status
            if initialize and reply.headers.get("mcp-session-id"):
                session.upstream_session_id = reply.headers["mcp-session-id"]
            async for relayed in reply_messages(reply):
                if request_id is not None and not answered:
                    answered = relayed.answers(request_id)
                    if answered and initialize:
                        session.protocol_version = _protocol_version(relayed.payload)
                session.deliver(relayed.raw)
        except Exception:  # one message's failure must not end the stream
            log.exception("SSE session %s: relaying a %s failed", session.id, message.method or "response")
        if request_id is not None and not answered:
            # A bare HTTP status (a 401 without a body, say) has no message in it: the client must
            # still get an answer to its request.
            failed = error_reply(
                request_id,
                INTERNAL_ERROR,
                "the upstream gave no answer to this request",
                {"failure_class": "upstream_forward_error", "upstream_http_status": status},
            )
            session.deliver(failed.body)
            return
        if initialize and not session.stream_started and session.upstream_session_id is not None:
            session.stream_started = True
            session.spawn(self._relay_server_stream(session))

    async def _relay_server_stream(self, session: SseSession) -> None:
        """The upstream's server-to-client messages (not tied to a request) onto the SSE stream."""
        for _ in range(STREAM_RETRIES + 1):
            reply = await self.gateway.listen(session.session_headers())
            if isinstance(reply, JsonReply | EmptyReply):
                return  # no stream offered (405), session gone (404), or unreachable (502)
            async for relayed in reply_messages(reply):
                session.deliver(relayed.raw)

    # -- housekeeping -------------------------------------------------------------------------

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while self.sessions:
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
            self.sweep()

    def sweep(self) -> int:
        """Close every stream not written to for :data:`STALE_AFTER_SECONDS`; return how many."""
        now = self.clock()
        stale = [s for s in self.sessions.values() if now - s.last_write > STALE_AFTER_SECONDS]
        for session in stale:
            session.close("stale: nothing could be written to the stream")
        return len(stale)

    async def close(self) -> None:
        """Shutdown: refuse new streams, close every open one, end their upstream sessions."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        open_sessions = list(self.sessions.values())
        for session in open_sessions:
            session.close("the proxy is shutting down")
        waits = [asyncio.ensure_future(session.ended.wait()) for session in open_sessions]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=DELETE_TIMEOUT_SECONDS)
            for wait in pending:
                wait.cancel()
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=DELETE_TIMEOUT_SECONDS)


def _protocol_version(payload: Any) -> str | None:
    result = cast(dict[str, Any], payload).get("result")
    if isinstance(result, dict):
        version = cast(dict[str, Any], result).get("protocolVersion")
        if isinstance(version, str):
            return version
    return None
