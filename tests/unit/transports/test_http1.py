"""The upstream HTTP/1.1 pool against raw local servers that write every byte themselves."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from helio_proxy.transports.upstream.http1 import (
    HIGH_WATER,
    MAX_HEAD_BYTES,
    Http1Pool,
    UpstreamConnectionError,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server running ``handler`` per connection; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)  # pyright: ignore[reportArgumentType]
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def _start(handler: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    raw = RawServer(handler)
    raw.server = await asyncio.start_server(raw._serve, "127.0.0.1", 0, ssl=tls)
    try:
        yield raw
    finally:
        raw.server.close()
        for writer in raw.writers:
            writer.close()  # each handler then ends on its own (a cancelled one would be logged)
        if raw.tasks:
            await asyncio.wait(raw.tasks, timeout=5)


def _answer(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + b"".join(e + b"\r\n" for e in extra)
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


async def _keep_alive(
    raw_server: list[RawServer], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while True:
        request = await raw_server[0].read_request(reader)
        writer.write(_answer(b'{"echo":%d}' % len(request)))


async def _post(pool: Http1Pool, body: bytes = b'{"x":1}', *, read_timeout: float | None = 5.0) -> bytes:
    response = await pool.request(
        "POST",
        "/mcp",
        {"content-type": "application/json"},
        body,
        connect_timeout=5,
        read_timeout=read_timeout,
    )
    return await response.read()


async def test_sequential_requests_reuse_one_kept_alive_connection() -> None:
    holder: list[RawServer] = []
    async with _start(lambda r, w: _keep_alive(holder, r, w)) as raw:
        holder.append(raw)
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/mcp?x=1")
        async with asyncio.timeout(5):
            answers = [await _post(pool) for _ in range(5)]
        await pool.close()
        assert all(answer.startswith(b'{"echo":') for answer in answers)
        assert raw.connections == 1
        first = raw.requests[0].decode()
        assert first.startswith("POST /mcp HTTP/1.1\r\n")
        assert f"host: 127.0.0.1:{raw.port}\r\n" in first
        assert "content-length: 7\r\n" in first
        assert first.endswith('\r\n\r\n{"x":1}')
        assert pool.target == "/mcp?x=1"


async def test_concurrent_requests_open_one_connection_each() -> None:
    holder: list[RawServer] = []
    arrived = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await holder[0].read_request(reader)
            if len(holder[0].requests) >= 3:
                arrived.set()
            await arrived.wait()  # nobody is answered before all three are in flight
            writer.write(_answer(b"{}"))

    async with _start(handler) as raw:
        holder.append(raw)
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(5):
            answers = await asyncio.gather(*(_post(pool) for _ in range(3)))
        assert answers == [b"{}"] * 3
        assert raw.connections == 3
        assert pool.idle_connections == 3
        await pool.close()


async def test_a_connection_the_server_closed_while_idle_does_not_fail_the_next_request() -> None:
    holder: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if holder[0].connections > 1:
            await _keep_alive(holder, reader, writer)
        await holder[0].read_request(reader)
        writer.write(_answer(b"{}"))
        await writer.drain()
        writer.close()  # said keep-alive, hangs up anyway

    async with _start(handler) as raw:
        holder.append(raw)
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(5):
            assert await _post(pool) == b"{}"
            assert await _post(pool) == b'{"echo":%d}' % len(raw.requests[1])
        assert raw.connections == 2
        await pool.close()


async def test_a_reset_with_no_answer_byte_on_a_reused_connection_is_sent_again_once() -> None:
    holder: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if holder[0].connections > 1:
            await _keep_alive(holder, reader, writer)
        await holder[0].read_request(reader)
        writer.write(_answer(b"{}"))
        await holder[0].read_request(reader)  # takes the second request, then drops it unanswered

    async with _start(handler) as raw:
        holder.append(raw)
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(5):
            assert await _post(pool) == b"{}"
            assert await _post(pool) == b'{"echo":%d}' % len(raw.requests[2])
        assert raw.connections == 2
        assert len(raw.requests) == 3
        await pool.close()


async def test_a_chunked_body_is_read_whole_and_the_connection_kept() -> None:
    holder: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await holder[0].read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            writer.write(b"6\r\n world\r\n0\r\n\r\n")

    async with _start(handler) as raw:
        holder.append(raw)
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(5):
            assert await _post(pool) == b"hello world"
            assert await _post(pool) == b"hello world"
        assert raw.connections == 1
        await pool.close()


async def test_a_gzip_answer_is_decoded_though_no_compression_was_offered() -> None:
    holder: list[RawServer] = []
    plain = b'{"result":"' + b"a" * 100_000 + b'"}'

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await holder[0].read_request(reader)
        writer.write(_answer(gzip.compress(plain), b"content-encoding: gzip"))

    async with _start(handler) as raw:
        holder.append(raw)
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(5):
            response = await pool.request("GET", "/", {}, None, connect_timeout=5, read_timeout=5)
            assert response.content_length is None  # the decoded size is not declared
            chunks = [chunk async for chunk in response.iter_chunks()]
        assert b"".join(chunks) == plain
        assert max(len(chunk) for chunk in chunks) <= 64 * 1024  # the caller's cap sees every piece
        assert b"accept-encoding" not in raw.requests[0].lower()
        await pool.close()


_OVERSIZED_HEAD = b"HTTP/1.1 200 OK\r\n" + b"".join(
    b"x-pad-%d: %s\r\n" % (n % 90, b"p" * 1000) for n in range(MAX_HEAD_BYTES // 1000 + 2)
)
_TOO_MANY_HEADERS = b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-h%d: v\r\n" % n for n in range(101)) + b"\r\n"


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        pytest.param(_OVERSIZED_HEAD, "head exceeds", id="head-over-64-kib"),
        pytest.param(_TOO_MANY_HEADERS, "more than 100 headers", id="over-100-headers"),
        pytest.param(b"SMTP ready\r\n\r\n", "malformed HTTP", id="not-http"),
    ],
)
async def test_an_answer_a_proxy_must_not_take_is_refused_and_its_connection_dropped(
    answer: bytes, refusal: str
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        await reader.read()

    async with _start(handler) as raw:
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(5):
            with pytest.raises(UpstreamConnectionError, match=refusal):
                await _post(pool)
        assert pool.idle_connections == 0
        await pool.close()


async def test_a_read_timeout_fires_on_a_silent_server_and_the_connection_is_dropped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # never answers

    async with _start(handler) as raw:
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(5):
            with pytest.raises(TimeoutError):
                await _post(pool, read_timeout=0.05)
        assert pool.idle_connections == 0
        await pool.close()


async def test_a_read_timeout_fires_when_the_body_goes_silent() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await reader.read()

    async with _start(handler) as raw:
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(5):
            response = await pool.request("GET", "/", {}, None, connect_timeout=5, read_timeout=0.05)
            with pytest.raises(TimeoutError):
                await response.read()
        await pool.close()


async def test_a_refused_connect_keeps_the_os_reason() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = Http1Pool(f"http://127.0.0.1:{port}/")
    with pytest.raises(ConnectionRefusedError) as caught:
        await _post(pool)
    assert caught.value.strerror
    await pool.close()


async def test_a_connection_cut_mid_body_is_an_error_and_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 40)
        await writer.drain()

    async with _start(handler) as raw:
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(5):
            response = await pool.request("GET", "/", {}, None, connect_timeout=5, read_timeout=5)
            with pytest.raises(UpstreamConnectionError, match="body"):
                await response.read()
        assert pool.idle_connections == 0
        await pool.close()


async def test_a_body_ended_by_the_connection_close_is_read_whole() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async with _start(handler) as raw:
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(5):
            assert await _post(pool) == b"until the end"
        assert pool.idle_connections == 0
        await pool.close()


async def test_a_large_body_read_slowly_pauses_the_socket_and_arrives_whole() -> None:
    size = 32 * 1024 * 1024
    body = bytes(range(256)) * (size // 256)
    server_writer: list[asyncio.StreamWriter] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        server_writer.append(writer)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + body)
        await writer.drain()
        await reader.read()

    async with _start(handler) as raw:
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/")
        async with asyncio.timeout(10):
            response = await pool.request("GET", "/", {}, None, connect_timeout=5, read_timeout=5)
            chunks = response.iter_chunks()
            received = len(await anext(chunks))
            for _ in range(20):  # the client reads nothing more for a while
                await asyncio.sleep(0.01)
            # Past the high-water mark the client stopped reading: the server is left holding bytes.
            assert server_writer[0].transport.get_write_buffer_size() > 0
            assert response._conn is not None
            assert response._conn._buffered <= HIGH_WATER + 256 * 1024
            digest = bytearray()
            async for chunk in chunks:
                received += len(chunk)
                if len(digest) < 1024:
                    digest += chunk
        assert received == size
        assert pool.idle_connections == 1
        await pool.close()


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_https_verifies_the_server_name_and_keeps_the_connection(tmp_path: Path) -> None:
    server_ctx, client_ctx = _self_signed(tmp_path)
    holder: list[RawServer] = []
    async with _start(lambda r, w: _keep_alive(holder, r, w), tls=server_ctx) as raw:
        holder.append(raw)
        pool = Http1Pool(f"https://localhost:{raw.port}/mcp", ssl_context=client_ctx)
        async with asyncio.timeout(5):
            assert (await _post(pool)).startswith(b'{"echo":')
            assert (await _post(pool)).startswith(b'{"echo":')
        assert raw.connections == 1
        await pool.close()
        untrusting = Http1Pool(f"https://localhost:{raw.port}/mcp")
        with pytest.raises(ssl.SSLCertVerificationError):
            await _post(untrusting)
        await untrusting.close()


async def test_a_response_dropped_unread_gives_its_slot_back_and_its_connection_is_not_reused() -> None:
    holder: list[RawServer] = []
    async with _start(lambda r, w: _keep_alive(holder, r, w)) as raw:
        holder.append(raw)
        pool = Http1Pool(f"http://127.0.0.1:{raw.port}/", size=1)
        async with asyncio.timeout(5):
            response = await pool.request("GET", "/", {}, None, connect_timeout=5, read_timeout=5)
            del response  # neither read, released nor closed
            assert (await _post(pool)).startswith(b'{"echo":')
        assert raw.connections == 2
        await pool.close()


def test_a_request_head_is_written_as_given_and_a_header_holding_a_newline_is_refused() -> None:
    pool = Http1Pool("http://127.0.0.1:9/mcp")
    head = pool._encode(  # pyright: ignore[reportPrivateUsage]
        "POST", "/mcp", {"content-type": "application/json", "x-é": "vé"}, b"{}"
    )
    assert head == (
        b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:9\r\ncontent-type: application/json\r\n"
        + "x-é: vé\r\n".encode()
        + b"content-length: 2\r\n\r\n{}"
    )
    assert pool._encode("GET", "/", {}, None) == b"GET / HTTP/1.1\r\nhost: 127.0.0.1:9\r\n\r\n"  # pyright: ignore[reportPrivateUsage]
    for headers in ({"x-a": "1\r\nx-b: 2"}, {"x-a": "1\n"}, {"x-a\r": "1"}, {"ok": "1", "x\nb": "2"}):
        with pytest.raises(ValueError, match="newline in request header"):
            pool._encode("POST", "/mcp", headers, b"")  # pyright: ignore[reportPrivateUsage]
