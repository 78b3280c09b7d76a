"""The listeners' sockets: what every accepted connection inherits."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from helio_proxy.server import Listener, bind


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_bind_makes_a_tcp_socket_with_nagle_off() -> None:
    sock = bind("127.0.0.1", 0, "listen")
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


@pytest.mark.asyncio
async def test_connections_accepted_on_a_stock_asyncio_loop_have_nagle_off() -> None:
    # With Nagle on, uvicorn's head and body (two writes) wait out the client's delayed ACK: every
    # call on a keep-alive connection took 40 ms on a loop without uvloop.
    assert "uvloop" not in type(asyncio.get_running_loop()).__module__
    listener = Listener(_ok, bind("127.0.0.1", 0, "listen"), "test")
    serving = asyncio.create_task(listener.serve())
    try:
        # bind() listens already: the kernel queues the connection until uvicorn accepts it
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        [connection] = listener.server.server_state.connections
        accepted = connection.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        writer.close()
        await writer.wait_closed()
    finally:
        listener.stop()
        await serving


class _Recording:
    """A transport that keeps what was written, as separate writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


@pytest.mark.asyncio
async def test_a_reply_head_goes_out_with_its_body_in_one_write() -> None:
    from helio_proxy.server import _HeadWithBody

    real = _Recording()
    transport = _HeadWithBody(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert real.writes == []
    transport.write(b"ok")
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    await asyncio.sleep(0)  # the loop's turn finds nothing held
    assert len(real.writes) == 1
    transport.write(b"more")  # not a head: straight through
    assert real.writes[-1] == b"more"
    assert transport.get_extra_info("peername") == "info:peername"


@pytest.mark.asyncio
async def test_a_head_with_nothing_after_it_goes_out_on_the_loops_next_turn() -> None:
    from helio_proxy.server import _HeadWithBody

    real = _Recording()
    transport = _HeadWithBody(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"]
    # 100 Continue is never held: the client waits for it before it sends the body
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert real.writes[-1] == b"HTTP/1.1 100 Continue\r\n\r\n"
    # a close sends what is held first; an abort drops it
    transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    transport.close()
    assert real.writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert real.closed
    transport.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    transport.abort()
    await asyncio.sleep(0)
    assert real.aborted
    assert real.writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"


async def _stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    )
    await asyncio.sleep(0.5)
    await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})


@pytest.mark.asyncio
async def test_a_stream_head_reaches_the_client_before_its_first_event() -> None:
    listener = Listener(_stream, bind("127.0.0.1", 0, "listen"), "test")
    serving = asyncio.create_task(listener.serve())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.4)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"transfer-encoding: chunked" in head
        assert (await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 2)).startswith(b"9\r\ndata: 1")
        # keep-alive: the next reply on the same connection arrives whole as well
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 2)
        assert rest.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in rest
        assert rest.endswith(b"0\r\n\r\n")
        writer.close()
        await writer.wait_closed()
    finally:
        listener.stop()
        await serving
