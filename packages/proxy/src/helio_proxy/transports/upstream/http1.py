"""A lean keep-alive HTTP/1.1 client for one origin: asyncio protocols and httptools (llhttp).

The streamable-HTTP upstream's hot path. One :class:`Http1Pool` per upstream keeps idle
connections (reused last-in first-out, closed after :data:`IDLE_TIMEOUT` seconds), at most
``size`` connections in use at once (further requests wait their turn). A request is one
``transport.write`` of head and body; its :class:`Response` hands the body over as it arrives.

What it does not do, on purpose: HTTP/2, proxies (no ``trust_env``), redirects (none followed),
cookies, ``Expect: 100-continue``, compression offered (an upstream that sends gzip or deflate
anyway is decoded). Against a hostile upstream: the response head is capped at
:data:`MAX_HEAD_BYTES` and :data:`MAX_HEADERS`; the body cap belongs to the caller, which counts
the decoded chunks it takes.

Failures: :class:`TimeoutError` (connect, or a read silence longer than ``read_timeout``),
:class:`OSError` from the connect (its ``strerror`` kept), :class:`UpstreamConnectionError` for a
connection lost mid-answer or an answer that is not HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Final, cast
from urllib.parse import unquote, urlsplit

import httptools  # pyright: ignore[reportMissingTypeStubs]

DEFAULT_POOL_SIZE: Final = 256
"""Upper bound on concurrent upstream connections per upstream."""

IDLE_TIMEOUT: Final = 30.0
"""Seconds an idle connection is kept for reuse before it is closed."""

MAX_HEAD_BYTES: Final = 64 * 1024
"""Largest response head (status line and headers) taken from an upstream."""

MAX_HEADERS: Final = 100
"""Most response headers taken from an upstream."""

HIGH_WATER: Final = 256 * 1024
"""Body bytes buffered for a slow reader before the socket stops being read."""

LOW_WATER: Final = 64 * 1024
"""Buffered body bytes under which a paused socket is read again."""

DECODE_CHUNK: Final = 64 * 1024
"""Largest piece a compressed body is inflated into at a time (the caller's cap sees each)."""


class UpstreamConnectionError(OSError):
    """The connection broke before the answer was complete, or the answer was not valid HTTP."""


class _Retry(Exception):
    """A reused connection closed before any byte of the answer: safe to send again once."""


class _Connection(asyncio.Protocol):
    """One socket, one request at a time; also the httptools parser's callback object."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._active = False
        self._received = 0
        self._head_bytes = 0
        self._head_done = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.complete = False
        self.keep_alive = False
        self._head_waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._body_waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._read_timeout: float | None = None
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self.complete:
            # Bytes nobody asked for (an idle connection, or past the answer's end): not reusable.
            self.keep_alive = False
            self.close()
            return
        self._received += len(data)
        if self._read_timeout is not None:
            self._deadline = self._loop.time() + self._read_timeout
        if not self._head_done:
            self._head_bytes += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamConnectionError("upstream answered with a protocol upgrade"))
            return
        except httptools.HttpParserError as exc:
            if self._error is None:
                self._fail(UpstreamConnectionError(f"upstream sent malformed HTTP: {exc}"))
            return
        if not self._head_done and self._head_bytes > MAX_HEAD_BYTES:
            self._fail(UpstreamConnectionError(f"upstream response head exceeds {MAX_HEAD_BYTES} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        if not self._active or self.complete or self._error is not None:
            return
        if self._head_done and not self._framed():
            # A body delimited by the end of the connection: this is its end.
            self._message_complete(keep_alive=False)
            return
        if self._received == 0:
            self._fail(_Retry(), close=False)
            return
        reason = f": {exc}" if exc is not None else ""
        where = "in its answer's body" if self._head_done else "before its answer's head ended"
        self._fail(UpstreamConnectionError(f"upstream closed the connection {where}{reason}"), close=False)

    def pause_writing(self) -> None:  # the request is one write; nothing to hold back
        return None

    def resume_writing(self) -> None:
        return None

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADERS:
            self._fail(UpstreamConnectionError(f"upstream sent more than {MAX_HEADERS} headers"))
            raise self._error or RuntimeError  # stops the parser; data_received keeps this error
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (we never ask for one): wait for the real one
            self.headers = []
            return
        self.status = status
        self._head_done = True
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # the end of an interim answer
        assert self._parser is not None
        self._message_complete(keep_alive=self._parser.should_keep_alive())

    # the client side

    def start(self, request: bytes, read_timeout: float | None) -> asyncio.Future[None]:
        """Send one request; the future resolves when the answer's head is in."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._active = True
        self._received = self._head_bytes = self._buffered = self.status = 0
        self._head_done = self.complete = self.keep_alive = False
        self.headers = []
        self._error = None
        self._head_waiter = waiter = self._loop.create_future()
        self._read_timeout = read_timeout
        if read_timeout is not None:
            self._deadline = self._loop.time() + read_timeout
            if self._timer is None:
                self._timer = self._loop.call_at(self._deadline, self._on_timer)
        self.transport.write(request)
        return waiter

    def finish(self) -> None:
        """The answer was taken: the connection is idle until its next request."""
        self._active = False
        self._parser = None
        self._head_waiter = self._body_waiter = None
        self._deadline = None
        self.idle_since = self._loop.time()

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and self._error is None and not self.closing

    @property
    def closing(self) -> bool:
        return self._closed or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()

    def content_length(self) -> int | None:
        for name, value in self.headers:
            if name == "content-length":
                return int(value) if value.isdigit() else None
        return None

    async def next_chunk(self) -> bytes:
        """The next piece of the body, ``b""`` at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            self._body_waiter = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._body_waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= LOW_WATER and self.transport is not None and not self._closed:
            self._paused = False
            if self._read_timeout is not None:
                self._deadline = self._loop.time() + self._read_timeout
            self.transport.resume_reading()
        return chunk

    def _framed(self) -> bool:
        """Whether the body has a length or chunked framing (else the connection's end ends it)."""
        for name, value in self.headers:
            if name == "content-length" or (name == "transfer-encoding" and "chunked" in value.lower()):
                return True
        return self.status in (204, 304)

    def _message_complete(self, *, keep_alive: bool) -> None:
        self.complete = True
        self.keep_alive = keep_alive
        self._deadline = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException, *, close: bool = True) -> None:
        self._error = error
        self.keep_alive = False
        for waiter in (self._head_waiter, self._body_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)
        if close:
            self.close()

    def _on_timer(self) -> None:
        """The connection's one read timer: re-armed at the current deadline until it passes."""
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._closed or self.complete:
            return
        now = self._loop.time()
        if self._paused:  # the reader is slow, not the upstream
            deadline = self._deadline = now + (self._read_timeout or 0.0)
        if now < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        where = "its answer's body" if self._head_done else "its answer"
        self._fail(TimeoutError(f"upstream sent nothing of {where} for {self._read_timeout} s"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Response:
    """An answer whose head is in; its body is read with :meth:`read` or :meth:`iter_chunks`.

    :meth:`release` gives the connection back to the pool when the body was read to its end
    (else closes it); :meth:`close` drops it. One of the two must be called.
    """

    __slots__ = ("_conn", "_decoder", "_pool", "content_length", "headers", "status")

    def __init__(self, pool: Http1Pool, conn: _Connection) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status = conn.status
        self.headers = conn.headers
        """``(name, value)`` pairs in the order received, names lower-cased."""
        encoding = self.header("content-encoding")
        self._decoder: zlib._Decompress | None = None  # pyright: ignore[reportPrivateUsage]
        if encoding is not None:
            encoding = encoding.strip().lower()
            if encoding in ("gzip", "x-gzip"):
                self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif encoding == "deflate":
                self._decoder = zlib.decompressobj(zlib.MAX_WBITS)
        self.content_length = conn.content_length() if self._decoder is None else None
        """The declared body length (``None`` when not declared, or when the body is compressed)."""

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (lower-case), or ``None``."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    async def read(self) -> bytes:
        """The whole body (decoded); the connection is then released."""
        conn = self._conn
        if conn is None:
            raise UpstreamConnectionError("the response was already released")
        if self._decoder is None and conn.complete and conn._error is None:  # pyright: ignore[reportPrivateUsage]
            body = b"".join(conn._chunks)  # pyright: ignore[reportPrivateUsage]
            conn._chunks.clear()  # pyright: ignore[reportPrivateUsage]
            self.release()
            return body
        parts = [chunk async for chunk in self.iter_chunks()]
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (decoded); released when read to its end, closed otherwise."""
        conn = self._conn
        if conn is None:
            raise UpstreamConnectionError("the response was already released")
        done = False
        try:
            decoder = self._decoder
            while chunk := await conn.next_chunk():
                if decoder is None:
                    yield chunk
                    continue
                while chunk:
                    try:
                        out = decoder.decompress(chunk, DECODE_CHUNK)
                    except zlib.error as exc:
                        raise UpstreamConnectionError(
                            f"upstream sent a body that does not decode: {exc}"
                        ) from None
                    chunk = decoder.unconsumed_tail
                    if out:
                        yield out
            if decoder is not None and (tail := decoder.flush()):
                yield tail
            done = True
        finally:
            if done:
                self.release()
            else:
                self.close()

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._give_back(conn, reuse=conn.reusable and not conn._chunks)  # pyright: ignore[reportPrivateUsage]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._give_back(conn, reuse=False)  # pyright: ignore[reportPrivateUsage]

    def __del__(self) -> None:
        # A response dropped without release or close must not keep its pool slot forever.
        if self._conn is not None:
            self.close()


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to the origin of ``url`` (``http`` or ``https``).

    ``https`` verifies the server against ``ssl_context`` (default: the system's trust store,
    :func:`ssl.create_default_context`) under the URL's host name.
    """

    def __init__(
        self,
        url: str,
        *,
        size: int = DEFAULT_POOL_SIZE,
        idle_timeout: float = IDLE_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        """The URL's path and query: what a request to ``url`` itself asks for."""
        self.basic_auth: str | None = None
        """``Basic`` credentials from the URL's user information, if it has any."""
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.basic_auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._slots = asyncio.Semaphore(size)
        self._idle_timeout = idle_timeout
        self._closed = False

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None,
        *,
        connect_timeout: float,
        read_timeout: float | None,
    ) -> Response:
        """Send one request and wait for its answer's head.

        A reused connection that turns out closed before any byte of the answer came is replaced
        once by a fresh one; nothing is sent again once the upstream answered anything.
        """
        if self._closed:
            raise UpstreamConnectionError("the upstream client is closed")
        request = self._encode(method, target, headers, body)
        await self._slots.acquire()
        conn: _Connection | None = None
        try:
            if self._closed:
                raise UpstreamConnectionError("the upstream client is closed")
            for attempt in (0, 1):
                conn = self._take() if attempt == 0 else None
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(connect_timeout)
                self._busy.add(conn)
                try:
                    await conn.start(request, read_timeout)
                except _Retry:
                    self._busy.discard(conn)
                    conn.close()
                    if reused:
                        continue
                    raise UpstreamConnectionError("upstream closed the connection before answering") from None
                return Response(self, conn)
            raise AssertionError("unreachable")
        except BaseException:
            if conn is not None:
                self._busy.discard(conn)
                conn.close()
            self._slots.release()
            raise

    def _encode(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> bytes:
        lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        # One CR and one LF per line, else a name or value holds one (counted in C, not per header).
        if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
            for name, value in headers.items():
                if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                    raise ValueError(f"newline in request header {name!r}")
        length = f"content-length: {len(body)}\r\n" if body is not None else ""
        head = f"{method} {target} HTTP/1.1\r\nhost: {self.host_header}\r\n{lines}{length}\r\n"
        encoded = head.encode("utf-8", "surrogateescape")
        return encoded + body if body else encoded

    def _take(self) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closing and now - conn.idle_since < self._idle_timeout:
                return conn
            conn.close()
        return None

    async def _connect(self, connect_timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(connect_timeout):
            _, conn = await loop.create_connection(
                lambda: _Connection(loop),
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl is not None else None,
            )
        return conn

    def _give_back(self, conn: _Connection, *, reuse: bool) -> None:
        self._busy.discard(conn)
        if reuse and not self._closed:
            conn.finish()
            self._idle.append(conn)
        else:
            conn.close()
        self._slots.release()

    @property
    def idle_connections(self) -> int:
        """How many open connections wait for reuse."""
        return len(self._idle)

    async def close(self) -> None:
        """Close every connection, idle or in use."""
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        self._busy.clear()


__all__ = ["DEFAULT_POOL_SIZE", "Http1Pool", "Response", "UpstreamConnectionError"]
