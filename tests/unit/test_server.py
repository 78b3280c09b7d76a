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
