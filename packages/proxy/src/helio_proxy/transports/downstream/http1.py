"""A lean HTTP/1.1 server for the agent-facing MCP listener: httptools (llhttp) under a small ASGI bridge.

The MCP listener is the proxy's hot path: every ``tools/call`` is one request on it. uvicorn's
httptools protocol spent about 12 µs of the event loop per request on a two-CPU VM beyond what
this one does (a trivial app at 32 connections: 43,000 against 93,000 requests/s, one process),
mostly in machinery a JSON-RPC endpoint does not use: an ``asyncio.Event`` and a keep-alive
timer per request, ASGI messages checked and re-checked, and the reply's head and body written
as two system calls. This server speaks the part of ASGI 3 (HTTP scope, no lifespan, no
WebSocket) that :class:`~helio_proxy.transports.downstream.streamable_http.McpListenerApp` uses,
with the same behaviour towards a client:

- keep-alive (HTTP/1.1 by default, ``Connection: close`` honoured), pipelined requests answered in
  order, ``Expect: 100-continue`` answered when the app first reads the body;
- a reply with a ``content-length`` goes out as one write, head and body; one without (a stream)
  is sent chunked, its head at the loop's next turn and each event as the app sends it, with
  back-pressure from the socket (``send`` waits while the transport's buffer is full);
- ``receive()`` gives the body as it arrives (reading pauses past :data:`BODY_HIGH_WATER` bytes
  not taken yet), then ``http.disconnect`` once the client has gone or the reply is complete;
- a request the parser refuses gets ``400`` (``431`` for a head over :data:`MAX_HEAD_BYTES` or
  :data:`MAX_HEADERS` headers) and the connection is closed; an app that fails before its reply
  starts gets ``500`` (``503`` when it is cancelled at shutdown), after it the connection is closed; a reply's header with a CR, LF or NUL
  in it fails the app (as in uvicorn) instead of splitting the reply;
- a connection idle for ``keep_alive`` seconds is closed, and so is one that has sent only part
  of a request head for that long (one sweep a second for all of them);
- on :meth:`Http1Server.stop` the socket stops accepting, idle connections close, requests in
  flight get ``graceful`` seconds to finish (their replies say ``connection: close``), then their
  tasks are cancelled;
- a reply given before the request's body was read to its end (``413``) lets the client finish
  sending: the rest is read and dropped (up to :data:`MAX_DROPPED` bytes, else the connection is
  closed), so the client reads the answer instead of a reset.

The dashboard and the SDK sideband stay on uvicorn (their apps need its middleware and lifespan).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, Final, cast
from urllib.parse import unquote

import httptools  # pyright: ignore[reportMissingTypeStubs]

log = logging.getLogger("helio.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
App = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

MAX_HEAD_BYTES: Final = 64 * 1024
"""Largest request head (request line and headers) taken from a client."""

MAX_HEADERS: Final = 100
"""Most request headers taken from a client."""

BODY_HIGH_WATER: Final = 256 * 1024
"""Request body bytes buffered and not yet taken by the app before the socket stops being read."""

BACKLOG: Final = 2048
"""The listening socket's queue of connections not accepted yet (as :func:`helio_proxy.server.bind`)."""

MAX_DROPPED: Final = 16 * 1024 * 1024
"""Body bytes of a request answered early (before its body was read) read and dropped so the
connection can carry on; past this it is closed."""

MAX_PIPELINED: Final = 16
"""Requests parsed ahead of the one being answered before the socket stops being read."""

_STATUS_LINES: Final = {
    int(status): b"HTTP/1.1 %d %s\r\n" % (int(status), status.phrase.encode("ascii")) for status in HTTPStatus
}
_BAD: Final = (b"\r", b"\n", b"\0")
_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


def _closing_reply(status: int, text: str) -> bytes:
    """A whole plain-text reply that ends the connection (the server's own answers)."""
    body = text.encode("ascii")
    return _status_line(status) + (
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
        % (len(body), body)
    )


def _address(info: Any) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(cast(tuple[Any, ...], info)) >= 2:
        host, port = cast(tuple[Any, ...], info)[:2]
        return str(host), int(port)
    return None


class _HeadTooLarge(Exception):
    """The request head passed :data:`MAX_HEAD_BYTES` or :data:`MAX_HEADERS`."""


class _Cycle:
    """One request and its reply: the ``receive`` and ``send`` the app is given."""

    __slots__ = (
        "body",
        "body_done",
        "buffered",
        "chunked",
        "complete",
        "conn",
        "continue_pending",
        "disconnected",
        "head",
        "head_only",
        "keep_alive",
        "last_given",
        "remaining",
        "scope",
        "started",
        "waiter",
    )

    def __init__(self, conn: _Connection, scope: Scope, *, keep_alive: bool, expect_continue: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.body: list[bytes] = []
        self.buffered = 0
        self.body_done = False
        """The request's body has been read whole by the parser."""
        self.last_given = False
        """``receive`` has handed out the body's end (``more_body`` false)."""
        self.keep_alive = keep_alive
        self.continue_pending = expect_continue
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        self.started = self.complete = self.chunked = False
        self.head_only = scope["method"] == "HEAD"
        self.head: bytes | None = None
        """The reply's head, until the first write of its body takes it along."""
        self.remaining = 0
        """Body bytes still owed under the reply's ``content-length``."""

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- receive -------------------------------------------------------------------------------

    async def receive(self) -> Message:
        conn = self.conn
        if self.continue_pending:
            self.continue_pending = False
            if (
                not self.disconnected
                and not self.started
                and not self.body_done  # the client did not wait for it
                and not conn.transport.is_closing()
            ):
                conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while True:
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
            if self.body or (self.body_done and not self.last_given):
                chunk = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.buffered = 0
                conn.resume_reading()
                if self.body_done:
                    self.last_given = True
                return {"type": "http.request", "body": chunk, "more_body": not self.body_done}
            conn.resume_reading()
            self.waiter = conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    # -- send ----------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected ASGI message 'http.response.start', got {kind!r}")
            self._start(message)
            return
        if self.complete:
            raise RuntimeError(f"unexpected ASGI message {kind!r} after the reply was complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected ASGI message 'http.response.body', got {kind!r}")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.head_only:
            out = b""
        elif self.chunked:
            out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more:
                out += b"0\r\n\r\n"
        else:
            if len(body) > self.remaining:
                raise RuntimeError("reply body longer than its content-length")
            self.remaining -= len(body)
            out = body
        head = self.head
        if head is not None:
            self.head = None
            out = head + out
        if out:
            conn.transport.write(out)
        if not more:
            if not self.head_only and not self.chunked and self.remaining:
                raise RuntimeError("reply body shorter than its content-length")
            self.complete = True
            self.wake()
            conn.response_complete(self)

    def _start(self, message: Message) -> None:
        status = int(message["status"])
        parts = [_status_line(status)]
        length: int | None = None
        chunked = False
        for name, value in message.get("headers", ()):
            for bad in _BAD:
                if bad in name or bad in value:
                    raise RuntimeError("invalid HTTP header name or value in the reply")
            lowered = name.lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
            elif lowered == b"connection" and b"close" in value.lower():
                self.keep_alive = False
            parts += (lowered, b": ", value, b"\r\n")
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        if (
            length is None
            and not chunked
            and not self.head_only
            and status not in (204, 304)
            and status >= 200
        ):
            chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        self.started = True
        self.chunked = chunked
        self.remaining = length or 0
        self.head = b"".join(parts)
        if chunked:
            # A stream: its head goes out at the loop's next turn if no event follows at once, so
            # the client knows the stream is open before the first event.
            self.conn.loop.call_soon(self._flush_head)

    def _flush_head(self) -> None:
        head = self.head
        if head is not None and not self.disconnected:
            self.head = None
            self.conn.transport.write(head)


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the app for each in turn."""

    def __init__(self, server: Http1Server) -> None:
        self.server = server
        self.loop = server.loop
        self.app = server.app
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.parsing: _Cycle | None = None
        """The request the parser is in (may be pipelined behind the one being answered)."""
        self.running: _Cycle | None = None
        self.pipeline: deque[_Cycle] = deque()
        self.read_paused = self.write_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.idle_since: float | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport
        self.client = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.idle_since = self.loop.time()
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        # idle_since stays as it is until a request is whole: a connection that sends part of a
        # head and stalls is swept like an idle one (it is cleared when a request starts).
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pyright: ignore[reportAttributeAccessIssue]
            # No protocol upgrades here (WebSocket, h2c): the request is answered as plain HTTP.
            cycle = self.parsing
            if cycle is not None and not cycle.body_done:
                self.on_message_complete()
        except httptools.HttpParserError as exc:  # pyright: ignore[reportAttributeAccessIssue]
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(431, "Request header fields too large")
            else:
                self._refuse(400, "Invalid HTTP request received.")

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for cycle in (self.running, *self.pipeline):
            if cycle is not None and not cycle.complete:
                cycle.disconnected = True
                cycle.wake()
        self.pipeline.clear()
        self._release_drain()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._release_drain()

    # -- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES or len(self.headers) >= MAX_HEADERS:
            raise _HeadTooLarge
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        parsed = httptools.parse_url(self.url)  # pyright: ignore[reportAttributeAccessIssue]
        raw_path: bytes = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        headers = self.headers
        expect_continue = False
        for name, value in headers:
            if name == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
        scope: Scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": parser.get_http_version(),
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": headers,
        }
        cycle = _Cycle(self, scope, keep_alive=parser.should_keep_alive(), expect_continue=expect_continue)
        self.parsing = cycle
        if self.running is None:
            self._run(cycle)
        else:
            self.pipeline.append(cycle)
            if len(self.pipeline) >= MAX_PIPELINED:
                self.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None or cycle.disconnected:
            return
        if cycle.complete:  # answered before its body was read: the rest is dropped
            cycle.buffered += len(body)
            if cycle.buffered > MAX_DROPPED:
                self.transport.close()
            return
        cycle.body.append(body)
        cycle.buffered += len(body)
        if cycle.buffered > BODY_HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.parsing
        if cycle is None:
            return
        cycle.body_done = True
        cycle.keep_alive = cycle.keep_alive and self.parser.should_keep_alive()
        cycle.wake()
        if cycle.complete and cycle is self.running:
            self._carry_on(cycle)  # the rest of an early-answered body has been dropped

    # -- requests ------------------------------------------------------------------------------

    def _run(self, cycle: _Cycle) -> None:
        self.running = cycle
        self.idle_since = None
        task = self.loop.create_task(self._serve(cycle))
        tasks = self.server.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _serve(self, cycle: _Cycle) -> None:
        try:
            await self.app(cycle.scope, cycle.receive, cycle.send)
        except BaseException as exc:  # the connection's last word on any failure, as uvicorn's
            if not isinstance(exc, asyncio.CancelledError):
                log.error("the MCP listener's app failed", exc_info=exc)
            if not cycle.started and not cycle.disconnected:
                # cancelled: the server is stopping and the request ran past its grace
                self._fail(cycle, 503 if isinstance(exc, asyncio.CancelledError) else 500)
            elif not cycle.complete:
                self.transport.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if not cycle.started and not cycle.disconnected:
                log.error("the MCP listener's app returned without starting its reply")
                self._fail(cycle, 500)
            elif not cycle.complete and not cycle.disconnected:
                log.error("the MCP listener's app returned without completing its reply")
                self.transport.close()

    def _fail(self, cycle: _Cycle, status: int) -> None:
        cycle.keep_alive = False
        cycle.started = cycle.complete = True
        self.transport.write(_closing_reply(status, HTTPStatus(status).phrase))
        self.response_complete(cycle)

    def response_complete(self, cycle: _Cycle) -> None:
        if cycle is not self.running:
            return
        if not cycle.body_done and cycle.keep_alive and not self.server.stopping:
            # Answered before its body was read to the end (413, say): closing now would reset
            # the connection under a client still sending, which then never reads the answer. The
            # rest of the body is read and dropped (up to MAX_DROPPED), then the connection carries on.
            cycle.body = []
            cycle.buffered = 0
            self.resume_reading()
            return
        self._carry_on(cycle)

    def _carry_on(self, cycle: _Cycle) -> None:
        """After a complete exchange: close, answer the next pipelined request, or wait idle."""
        self.running = None
        if not cycle.keep_alive or self.server.stopping:
            self.transport.close()
            return
        if self.transport.is_closing():
            return
        if self.pipeline:
            self._run(self.pipeline.popleft())
        else:
            self.idle_since = self.loop.time()
        self.resume_reading()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request the parser refused, and close (nothing after it can be trusted)."""
        cycle = self.running
        if cycle is not None and cycle.started:
            self.transport.close()  # mid-reply: there is no place for another answer
            return
        self.transport.write(_closing_reply(status, reason))
        if cycle is not None:  # the app's later sends and receives find the client gone
            cycle.disconnected = True
            cycle.wake()
            self.running = None
        self.transport.close()

    # -- flow control --------------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.read_paused and not self.transport.is_closing():
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and len(self.pipeline) < MAX_PIPELINED:
            cycle = self.parsing
            if cycle is not None and cycle.buffered > BODY_HIGH_WATER:
                return
            self.read_paused = False
            with contextlib.suppress(RuntimeError):  # closing
                self.transport.resume_reading()

    async def drain(self) -> None:
        waiter = self.loop.create_future()
        self.drain_waiters.append(waiter)
        await waiter

    def _release_drain(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- shutdown ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """The server is stopping: close now if idle, else after the reply in flight."""
        if self.running is None:
            self.transport.close()
        else:
            self.running.keep_alive = False
            self.pipeline.clear()


class Http1Server:
    """Serves one ASGI app on one listening socket until :meth:`stop`."""

    def __init__(self, app: App, *, keep_alive: float = 30.0, graceful: float = 5.0) -> None:
        self.app = app
        self.keep_alive = keep_alive
        self.graceful = graceful
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self._stop: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    async def serve(self, sock: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self.stopping:
            self._stop.set()
        server = await self.loop.create_server(lambda: _Connection(self), sock=sock, backlog=BACKLOG)
        sweeper = self.loop.create_task(self._sweep_idle(), name="helio-mcp-idle-sweep")
        try:
            await self._stop.wait()
        finally:
            sweeper.cancel()
            server.close()
            await self._shut_down()

    def stop(self) -> None:
        self.stopping = True
        if self._stop is not None:
            self._stop.set()

    async def _sweep_idle(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            cutoff = self.loop.time() - self.keep_alive
            for conn in list(self.connections):
                if conn.running is None and conn.idle_since is not None and conn.idle_since < cutoff:
                    conn.transport.close()

    async def _shut_down(self) -> None:
        for conn in list(self.connections):
            conn.shutdown()
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=self.graceful)
            if pending:
                log.warning("cancelling %d request(s) still running after %.0fs", len(pending), self.graceful)
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=self.graceful)
        for conn in list(self.connections):
            conn.transport.close()
