"""The MCP listener's HTTP/1.1 server, over real loopback sockets: what a client sees."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from helio_proxy.server import bind
from helio_proxy.transports.downstream.asgi import read_body
from helio_proxy.transports.downstream.http1 import MAX_HEAD_BYTES, Http1Server

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@asynccontextmanager
async def serving(app: App, **options: float) -> AsyncIterator[tuple[Http1Server, int]]:
    sock = bind("127.0.0.1", 0, "test")
    port = sock.getsockname()[1]
    server = Http1Server(app, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve(sock))
    try:
        yield server, port
    finally:
        server.stop()
        await asyncio.wait_for(task, 15)


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the method, path, query and body it was given."""
    body = await read_body(receive, 1 << 30)
    payload = b"%s %s ?%s %s" % (
        scope["method"].encode(),
        scope["path"].encode(),
        scope["query_string"],
        body,
    )
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def reply(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One reply with a content-length: its head and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await asyncio.wait_for(reader.readexactly(length), 5)


async def test_keep_alive_requests_are_answered_whole_on_one_connection() -> None:
    async with serving(echo) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in range(3):
            writer.write(b"POST /mcp/a%%20b?x=%d HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}" % n)
            head, body = await reply(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"connection: close" not in head
            assert body == b"POST /mcp/a b ?x=%d {}" % n
        writer.close()


async def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    running = 0
    most = 0

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05 if scope["path"] == "/first" else 0)
        running -= 1
        await echo(scope, receive, send)

    async with serving(slow) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /first HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n1"
            b"POST /second HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n2"
        )
        assert (await reply(reader))[1] == b"POST /first ? 1"
        assert (await reply(reader))[1] == b"POST /second ? 2"
        assert most == 1
        writer.close()


@pytest.mark.parametrize(
    "request_line",
    [
        b"POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        b"POST / HTTP/1.0\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
    ],
)
async def test_a_client_that_will_not_keep_the_connection_gets_it_closed(request_line: bytes) -> None:
    async with serving(echo) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_line)
        data = await asyncio.wait_for(reader.read(), 5)  # to EOF: the server closed
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"connection: close\r\n" in data
        writer.close()


async def test_expect_100_continue_is_answered_when_the_app_reads_the_body() -> None:
    async with serving(echo) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"body")
        assert (await reply(reader))[1] == b"POST / ? body"
        writer.close()


async def test_a_chunked_request_body_reaches_the_app_whole_and_a_large_one_too() -> None:
    async with serving(echo) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        assert (await reply(reader))[1] == b"POST / ? abcde"
        big = b"x" * (3 << 20)  # past the high-water mark: reading pauses and resumes
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(big) + big)
        assert (await reply(reader))[1] == b"POST / ? " + big
        writer.close()


async def test_a_stream_is_chunked_and_its_head_arrives_before_its_first_event() -> None:
    async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with serving(stream) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /mcp HTTP/1.1\r\nhost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.25)
        assert b"transfer-encoding: chunked\r\n" in head
        assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5) == b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"
        writer.close()


async def test_head_requests_get_no_body() -> None:
    async with serving(echo) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\nGET /after HTTP/1.1\r\nhost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        assert (await reply(reader))[1] == b"GET /after ? "  # no body bytes came between
        writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nx-big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"x-%d: 1\r\n" % n for n in range(200)) + b"\r\n", b"431"),
    ],
)
async def test_a_request_the_parser_refuses_gets_an_error_and_the_connection_closes(
    request_bytes: bytes, status: bytes
) -> None:
    async with serving(echo) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        data = await asyncio.wait_for(reader.read(), 5)
        assert data.startswith(b"HTTP/1.1 " + status)
        assert b"connection: close" in data
        writer.close()


async def test_a_failing_app_answers_500_before_its_reply_and_closes_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/late":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
            )
            await send({"type": "http.response.body", "body": b"half", "more_body": True})
        elif scope["path"] == "/header":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nset-cookie: evil")]}
            )
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, "helio.http"):
        async with serving(fails) as (_, port):
            for path, expected in ((b"/early", b"HTTP/1.1 500"), (b"/header", b"HTTP/1.1 500")):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n" % path)
                data = await asyncio.wait_for(reader.read(), 5)
                assert data.startswith(expected)
                assert b"evil" not in data
                writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /late HTTP/1.1\r\nhost: x\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 5)  # EOF after the half body
            assert data.startswith(b"HTTP/1.1 200")
            assert data.endswith(b"half")
            writer.close()
    assert "app failed" in caplog.text


async def test_an_early_reply_lets_the_client_finish_sending_then_the_connection_carries_on() -> None:
    # A 413 given before the body is read: closing at once would reset the connection under a
    # client still sending, which would then never read the answer.
    async def refuses(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/ok":
            await echo(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async with serving(refuses) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b"x" * (2 << 20)
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        head, _ = await reply(reader)
        assert head.startswith(b"HTTP/1.1 413")
        writer.write(b"POST /ok HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi")
        assert (await reply(reader))[1] == b"POST /ok ? hi"
        # past MAX_DROPPED, the connection is closed instead
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % (64 << 20))
        assert (await reply(reader))[0].startswith(b"HTTP/1.1 413")
        with pytest.raises((ConnectionError, OSError)):
            await _send_chunks(writer, 64, 1 << 20)
        writer.close()


async def _send_chunks(writer: asyncio.StreamWriter, count: int, size: int) -> None:
    for _ in range(count):
        writer.write(b"y" * size)
        await writer.drain()


async def test_the_app_learns_that_the_client_went_away() -> None:
    gone: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def waits(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive, 1 << 30)
        gone.set_result(await receive())  # blocks until the client disconnects
        await send({"type": "http.response.start", "status": 200, "headers": []})  # ignored

    async with serving(waits) as (_, port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        assert await asyncio.wait_for(gone, 5) == {"type": "http.disconnect"}


async def test_idle_connections_are_closed_after_the_keep_alive_time() -> None:
    async with serving(echo, keep_alive=0.5) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await reply(reader)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server's sweep
        assert not server.connections
        writer.close()


async def test_a_connection_that_stalls_inside_a_request_head_is_closed_like_an_idle_one() -> None:
    async with serving(echo, keep_alive=0.5) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /mcp HTTP/1.1\r\nhost: x\r\nx-slow: ")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert not server.connections
        writer.close()


async def test_stopping_closes_idle_connections_lets_a_request_finish_and_cancels_a_stuck_one() -> None:
    release = asyncio.Event()
    cancelled = asyncio.Event()

    async def held(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            if scope["path"] == "/stuck":
                await asyncio.sleep(60)
            await release.wait()
            await echo(scope, receive, send)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sock = bind("127.0.0.1", 0, "test")
    port = sock.getsockname()[1]
    server = Http1Server(held, keep_alive=30, graceful=1)  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve(sock))
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
    busy_writer.write(b"GET /busy HTTP/1.1\r\nhost: x\r\n\r\n")
    stuck_reader, stuck_writer = await asyncio.open_connection("127.0.0.1", port)
    stuck_writer.write(b"GET /stuck HTTP/1.1\r\nhost: x\r\n\r\n")
    await asyncio.sleep(0.1)
    server.stop()
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""
    release.set()
    head, body = await reply(busy_reader)
    assert b"connection: close" in head
    assert body == b"GET /busy ? "
    await asyncio.wait_for(task, 10)
    assert cancelled.is_set()
    stuck = await asyncio.wait_for(stuck_reader.read(), 5)
    assert stuck.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"connection: close" in stuck
    for writer in (idle_writer, busy_writer, stuck_writer):
        writer.close()
