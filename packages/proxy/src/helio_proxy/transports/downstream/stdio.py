"""Agent-facing stdio (``helio wrap``): the proxy is an MCP server on its own stdin/stdout.

Messages are newline-delimited JSON-RPC. Each one goes through the gateway like a ``POST /mcp``
(:func:`~helio_proxy.gateway.messages.message_inbound`): requests run concurrently, so the
client can answer the server's sampling or elicitation requests while a tool call waits on
them; notifications and responses are handed over in the order they arrive. Every message of
a reply is written as one line (:func:`~helio_proxy.gateway.messages.reply_messages`); nothing
else is ever written to stdout.

One downstream session: the ``Mcp-Session-Id`` that answers ``initialize`` is kept and sent
with every later message. Lines that are not JSON-RPC get the same errors as over HTTP
(``-32700`` / ``-32600``, with the id when one could be read); a line repeating an object key,
or a ``tools/call`` without an ``id``, is answered ``-32600`` and recorded as ``rejected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import sys
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, Final, cast

from helio_proxy.gateway import Gateway
from helio_proxy.gateway.exchange import JsonReply, Reply
from helio_proxy.gateway.messages import message_headers, message_inbound, reply_messages
from helio_proxy.jsonlimits import DEFAULT_LIMITS, JsonLimits, body_limit_data
from helio_proxy.jsonrpc import INVALID_REQUEST, EnvelopeError, Kind, Message, dumps, error_payload, parse
from helio_proxy.transports.ndjson import OVERSIZED, encode_line, read_lines

log = logging.getLogger("helio_proxy.stdio")

DRAIN_SECONDS: Final = 2.0
"""After stdin closes, how long requests still in flight get to finish before they are cancelled."""

Write = Callable[[bytes], Awaitable[None]]


class StdioServer:
    """Serves one MCP client over a line reader and a line writer."""

    def __init__(
        self,
        gateway: Gateway,
        reader: asyncio.StreamReader,
        write: Write,
        *,
        max_line_bytes: int,
        limits: JsonLimits = DEFAULT_LIMITS,
    ) -> None:
        self.gateway = gateway
        self.reader = reader
        self.max_line_bytes = max_line_bytes
        self.limits = limits
        self.session_id: str | None = None
        """The upstream session this client is in (from the answer to its ``initialize``)."""
        self.fatal: str | None = None
        """Why the server cannot go on (the upstream could not be started); ``serve`` then returns."""
        self._write = write
        self._write_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._handshake: asyncio.Task[None] | None = None

    def stop(self, reason: str | None = None) -> None:
        """End :meth:`serve` (``reason``: a fatal problem, reported as :attr:`fatal`)."""
        if reason is not None and self.fatal is None:
            self.fatal = reason
        self._stop.set()

    async def serve(self) -> None:
        """Until stdin closes or :meth:`stop`; then let requests in flight finish briefly."""
        reading = asyncio.ensure_future(self._read())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._drain()

    async def _read(self) -> None:
        async for line in read_lines(self.reader):
            if line is OVERSIZED:
                await self._send_error(
                    None,
                    INVALID_REQUEST,
                    f"message larger than {self.max_line_bytes} bytes",
                    body_limit_data(self.max_line_bytes),
                )
                continue
            assert isinstance(line, bytes)
            try:
                message = parse(line, self.limits)
            except EnvelopeError as exc:
                if exc.reason is not None:  # recorded as rejected, answered like over HTTP
                    reply = await self.gateway.refuse(exc, message_headers(self.session_id))
                    await self.send(reply.body)
                else:
                    await self._send_error(exc.request_id, exc.code, str(exc))
                continue
            if self._handshake is not None and not self._handshake.done():
                # Until initialize is answered there is no session to send anything else into.
                await asyncio.wait({self._handshake})
            if message.kind is Kind.REQUEST:
                task = asyncio.create_task(self._request(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                if message.method == "initialize":
                    self._handshake = task
            else:
                await self._one_way(message)

    async def _request(self, message: Message) -> None:
        reply = await self.gateway.handle(message_inbound(message, self.session_id))
        is_initialize = message.method == "initialize"
        if is_initialize and "mcp-session-id" in reply.headers:
            self.session_id = reply.headers["mcp-session-id"]
        async for out in reply_messages(reply):
            await self.send(out.raw)
        if is_initialize and self.session_id is None:
            self.stop(f"the upstream could not be initialized: {_error_text(reply)}")

    async def _one_way(self, message: Message) -> None:
        """A notification or a response: forwarded; a failure is logged (there is nobody to answer)."""
        reply = await self.gateway.handle(message_inbound(message, self.session_id))
        if isinstance(reply, JsonReply):
            log.warning("could not forward %s: %s", message.method or "a response", _error_text(reply))

    async def send(self, message: bytes) -> None:
        """Write one message as one line (never interleaved with another)."""
        line = encode_line(message)
        async with self._write_lock:
            await self._write(line)

    async def _send_error(
        self, request_id: Any, code: int, text: str, data: dict[str, Any] | None = None
    ) -> None:
        await self.send(dumps(error_payload(request_id, code, text, data)))

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=DRAIN_SECONDS)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _error_text(reply: Reply) -> str:
    """The JSON-RPC error message of a failed reply (for logs)."""
    if isinstance(reply, JsonReply):
        payload = reply.payload
        if payload is None:
            with contextlib.suppress(ValueError):
                payload = json.loads(reply.body)
        if isinstance(payload, dict):
            error = cast(dict[str, Any], payload).get("error")
            if isinstance(error, dict):
                return str(cast(dict[str, Any], error).get("message", error))
    return f"status {reply.status}"


async def open_stdio(
    stdin: BinaryIO | None = None, stdout: BinaryIO | None = None, *, limit: int
) -> tuple[asyncio.StreamReader, Write]:
    """A line reader on stdin and a writer on stdout (pipes, ttys; regular files through a thread)."""
    source: BinaryIO = stdin or sys.stdin.buffer
    sink: BinaryIO = stdout or sys.stdout.buffer
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    if _is_pipe(source):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), source)
    else:  # a regular file: read it off the loop
        data = await asyncio.to_thread(source.read)
        reader.feed_data(data)
        reader.feed_eof()
    if not _is_pipe(sink):

        async def write_blocking(data: bytes) -> None:
            await asyncio.to_thread(_write_all, sink, data)

        return reader, write_blocking
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sink)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)

    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    return reader, write


def _is_pipe(stream: BinaryIO) -> bool:
    """Whether the event loop can watch it (uvloop aborts on a regular file rather than refusing it)."""
    mode = os.fstat(stream.fileno()).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


def _write_all(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()
