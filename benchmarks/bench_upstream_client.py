"""CPU per POST of the upstream HTTP client alone: aiohttp against the http1 pool.

A raw asyncio upstream answering a fixed JSON-RPC result runs in a child process; this process
sends ``--calls`` POSTs with ``--concurrency`` in flight through each client in turn and reports
the CPU time of this process per call (``time.process_time``), min of ``--repeats``.

    uv run python benchmarks/bench_upstream_client.py [--calls 20000] [--concurrency 8] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from collections.abc import Awaitable, Callable
from typing import cast

import aiohttp

from helio_proxy.transports.upstream.http1 import Http1Pool

BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}'
ANSWER = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}'


def _upstream(sock: socket.socket) -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(ANSWER),
        ANSWER,
    )

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast("asyncio.Transport", transport)
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                head = self.buffer[:end].lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length :]
                self.transport.write(reply)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Echo, sock=sock)
        await server.serve_forever()

    asyncio.run(main())


async def _run(send: Callable[[], Awaitable[bytes]], calls: int, concurrency: int) -> float:
    async def worker(n: int) -> None:
        for _ in range(n):
            assert await send() == ANSWER

    for _ in range(200):  # warm the pool
        await send()
    started = time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / calls * 1e6


async def _measure(url: str, calls: int, concurrency: int) -> tuple[float, float]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    async with aiohttp.ClientSession() as session:
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=30)

        async def aio() -> bytes:
            async with session.post(
                url, data=BODY, headers=headers, timeout=timeout, allow_redirects=False
            ) as r:
                return await r.read()

        aio_us = await _run(aio, calls, concurrency)
    pool = Http1Pool(url)

    async def lean() -> bytes:
        response = await pool.request(
            "POST", pool.target, dict(headers), BODY, connect_timeout=5, read_timeout=30
        )
        return await response.read()

    lean_us = await _run(lean, calls, concurrency)
    await pool.close()
    return aio_us, lean_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--uvloop", action="store_true", help="run the clients on uvloop (as helio start does)"
    )
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    child = multiprocessing.get_context("spawn").Process(target=_upstream, args=(sock,), daemon=True)
    child.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    try:
        results = [asyncio.run(_measure(url, args.calls, args.concurrency)) for _ in range(args.repeats)]
    finally:
        child.terminate()
    print(f"aiohttp.ClientSession: {min(r[0] for r in results):.1f} µs CPU per POST")
    print(f"http1.Http1Pool:       {min(r[1] for r in results):.1f} µs CPU per POST")


if __name__ == "__main__":
    main()
