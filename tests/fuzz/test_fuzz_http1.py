"""Hostile bytes on the MCP listener's HTTP/1.1 server (``transports/downstream/http1.py``).

Requests drawn whole (method, target, headers, ``content-length`` or chunked body, ``expect``,
pipelined pairs), then mutated byte by byte and written in random pieces over a real socket,
the client closing its side after the last piece. Whatever arrives, the server must answer with
HTTP (or close without a word), never with a 5xx (the app behind it cannot fail, so a 5xx is the
server mis-delivering), log no error, not hang, and go on serving the next connection."""

from __future__ import annotations

import asyncio
import random
from typing import Any, Final

from hypothesis import given
from hypothesis import strategies as st

from helio_proxy.server import bind
from helio_proxy.transports.downstream.asgi import read_body
from helio_proxy.transports.downstream.http1 import Http1Server
from tests.fuzz.support import HANG_SECONDS, TALLY, fuzz_settings, no_errors_logged, record_rss, variants

SHARE: Final = 0.2
"""Of each surface's input budget: the HTTP layer is small next to what the MCP app checks."""


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body and answers its length (never fails)."""
    try:
        body = b"%d" % len(await read_body(receive, 1 << 30))
    except ConnectionResetError:  # the client went away while sending it
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def _request(method: str, target: str, headers: list[tuple[str, str]], body: bytes, chunked: bool) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers)]
    if chunked:
        lines.append("transfer-encoding: chunked")
        framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:3], body[3:]) if part)
        payload = framed + b"0\r\n\r\n"
    else:
        lines.append(f"content-length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


requests = st.builds(
    _request,
    method=st.sampled_from(["POST", "GET", "DELETE", "HEAD", "OPTIONS", "P\x00ST", ""]),
    target=st.sampled_from(
        ["/mcp", "/mcp?x=1", "/%2e%2e/mcp", "/m%zzcp", "*", "http://h/mcp", "/" + "a" * 3000]
    ),
    headers=st.lists(
        st.tuples(
            st.sampled_from(["accept", "expect", "connection", "x-a", "content-length", "transfer-encoding"]),
            st.sampled_from(["100-continue", "close", "keep-alive", "chunked", "-1", "9" * 30, "", "a\tb"]),
        ),
        max_size=4,
    ),
    body=st.binary(max_size=64),
    chunked=st.booleans(),
)


async def _exchange(port: int, data: bytes, seed: int) -> bytes:
    """Write ``data`` in random pieces, close the writing side, read everything the server says."""
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        at = 0
        while at < len(data):
            step = rng.randint(1, 64)
            writer.write(data[at : at + step])
            at += step
            if rng.random() < 0.2:
                await asyncio.sleep(0)
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(HANG_SECONDS):
            return await reader.read()
    except (ConnectionError, OSError):
        return b""  # the server closed while the rest was being written (a refused head)
    finally:
        writer.close()


def _check(answer: bytes, sent: bytes) -> None:
    if not answer:
        return
    assert answer.startswith(b"HTTP/1.1 "), (sent, answer)
    status = answer[9:12]
    assert status[:1] in (b"1", b"2", b"4"), (sent, answer)


async def test_the_http_server_answers_hostile_bytes_with_http_and_keeps_serving() -> None:
    sock = bind("127.0.0.1", 0, "fuzz")
    port = sock.getsockname()[1]
    server = Http1Server(_app, keep_alive=5, graceful=1)  # type: ignore[arg-type]
    serving = asyncio.create_task(server.serve(sock))
    loop = asyncio.get_running_loop()

    async def send_all(raws: list[bytes], seed: int) -> list[bytes]:
        return [await _exchange(port, raw, seed + n) for n, raw in enumerate(raws)]

    @given(first=requests, second=st.none() | requests, seed=st.integers(0, 2**32))
    @fuzz_settings(share=SHARE)
    def one(first: bytes, second: bytes | None, seed: int) -> None:
        whole = first + (second or b"")
        raws = [whole, *variants(whole, seed)]
        answers = asyncio.run_coroutine_threadsafe(send_all(raws, seed), loop).result()
        TALLY["MCP listener's HTTP/1.1 server (raw bytes, split, pipelined)"] += len(raws)
        for raw, answer in zip(raws, answers, strict=True):
            _check(answer, raw)

    try:
        with no_errors_logged(loop) as errors:
            await asyncio.to_thread(one)
        assert errors == []
        # still serving, and nothing left running
        answer = await _exchange(port, b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi", 0)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(b"\r\n\r\n2")
        if server.tasks:
            await asyncio.wait(set(server.tasks), timeout=HANG_SECONDS)
        assert not server.tasks
    finally:
        server.stop()
        await asyncio.wait_for(serving, 10)
    record_rss("http1")
