"""A hostile MCP upstream for the e2e tests: a real process that misbehaves on purpose.

``python -m tests.e2e.hostile_upstream --port N`` serves streamable HTTP at ``/mcp``;
``python -m tests.e2e.hostile_upstream --stdio`` speaks newline-delimited JSON-RPC on stdin/stdout.
It answers ``initialize`` and ``tools/list`` properly (so the proxy boots and primes), then each
tool misbehaves in its own way:

* ``echo``: a correct answer (the control: other sessions must still be served);
* ``gigabytes``: a JSON answer of 1 GiB (HTTP: chunked, no length) or 256 MiB (stdio: one line);
* ``endless``: an SSE stream of notifications every 50 ms that never answers (stdio: the same lines);
* ``flood``: notifications as fast as the transport takes them, never answering;
* ``garbage``: bytes that are not JSON;
* ``wrong_id``: a well-formed response to another request id.

``POST /control {"tools_list": "huge"}`` (HTTP only) makes the next ``tools/list`` answers about
64 MiB of tool definitions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web

GIB: Final = 1 << 30
STDIO_BYTES: Final = 256 << 20
"""A stdio child cannot be stopped from writing short of killing it: it writes a quarter GiB."""
CHUNK: Final = b"x" * (1 << 20)
TOOLS: Final = ["echo", "gigabytes", "endless", "flood", "garbage", "wrong_id"]


def tool_list() -> list[dict[str, Any]]:
    return [
        {"name": name, "description": f"the {name} tool", "inputSchema": {"type": "object"}} for name in TOOLS
    ]


def huge_tool_list() -> bytes:
    """About 64 MiB of tool definitions (each with a 4 KiB description)."""
    padding = "d" * 4096
    tools = [
        {"name": f"tool_{i}", "description": padding, "inputSchema": {"type": "object"}}
        for i in range(16_000)
    ]
    return json.dumps(tools).encode()


def result(request_id: Any, value: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": value}).encode()


def notification(n: int) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": f"n{n}"}}
    ).encode()


INITIALIZED: Final = {
    "protocolVersion": "2025-06-18",
    "capabilities": {"tools": {"listChanged": False}},
    "serverInfo": {"name": "hostile", "version": "1"},
}


# -- streamable HTTP -----------------------------------------------------------------------------


class HttpUpstream:
    def __init__(self) -> None:
        self.huge_list: bytes | None = None

    async def control(self, request: web.Request) -> web.Response:
        huge = (await request.json()).get("tools_list") == "huge"
        self.huge_list = huge_tool_list() if huge else None  # built now, so answering it is quick
        return web.json_response({"ok": True})

    async def mcp(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        message = await request.json()
        method = message.get("method")
        request_id = message.get("id")
        if request_id is None:
            return web.Response(status=202)
        if method == "initialize":
            return web.Response(
                body=result(request_id, INITIALIZED),
                content_type="application/json",
                headers={"mcp-session-id": "hostile-session"},
            )
        if method == "tools/list":
            if self.huge_list is not None:
                body = b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode() + b',"result":{"tools":'
                return web.Response(body=body + self.huge_list + b"}}", content_type="application/json")
            return web.Response(
                body=result(request_id, {"tools": tool_list()}), content_type="application/json"
            )
        if method != "tools/call":
            return web.Response(body=result(request_id, {}), content_type="application/json")
        name = message["params"]["name"]
        match name:
            case "gigabytes":
                return await self._gigabytes(request, request_id)
            case "endless":
                return await self._stream(request, pause=0.05)
            case "flood":
                return await self._stream(request, pause=0.0, batch=100)
            case "garbage":
                return web.Response(body=b"\x00\xff{not json at all", content_type="application/json")
            case "wrong_id":
                return web.Response(body=result(9999, {"content": []}), content_type="application/json")
            case _:
                text = json.dumps(message["params"].get("arguments") or {})
                return web.Response(
                    body=result(request_id, {"content": [{"type": "text", "text": text}], "isError": False}),
                    content_type="application/json",
                )

    async def _gigabytes(self, request: web.Request, request_id: Any) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        head = (
            b'{"jsonrpc":"2.0","id":'
            + json.dumps(request_id).encode()
            + b',"result":{"content":[{"type":"text","text":"'
        )
        try:
            await response.write(head)
            for _ in range(GIB // len(CHUNK)):
                await response.write(CHUNK)
            await response.write(b'"}]}}')
        except (ConnectionResetError, RuntimeError):
            pass  # the proxy stopped reading, as it should
        return response

    async def _stream(self, request: web.Request, *, pause: float, batch: int = 1) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        n = 0
        try:
            while True:
                events: list[bytes] = []
                for _ in range(batch):
                    n += 1
                    events.append(b"event: message\ndata: " + notification(n) + b"\n\n")
                await response.write(b"".join(events))
                await asyncio.sleep(pause)
        except (ConnectionResetError, RuntimeError):
            pass
        return response


def serve_http(port: int) -> None:
    upstream = HttpUpstream()
    app = web.Application(client_max_size=1 << 20)
    app.router.add_route("*", "/mcp", upstream.mcp)
    app.router.add_post("/control", upstream.control)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- stdio ---------------------------------------------------------------------------------------


async def serve_stdio() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    tasks: set[asyncio.Task[None]] = set()

    async def write(line: bytes) -> None:
        writer.write(line + b"\n")
        await writer.drain()

    async def stream(pause: float) -> None:
        n = 0
        while True:
            n += 1
            await write(notification(n))
            await asyncio.sleep(pause)

    async def gigabytes(request_id: Any) -> None:
        writer.write(b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode() + b',"result":{"text":"')
        for _ in range(STDIO_BYTES // len(CHUNK)):
            writer.write(CHUNK)
            await writer.drain()
        await write(b'"}}')

    async def handle(message: dict[str, Any]) -> None:
        request_id = message.get("id")
        method = message.get("method")
        if request_id is None:
            return
        if method == "initialize":
            await write(result(request_id, INITIALIZED))
        elif method == "tools/list":
            await write(result(request_id, {"tools": tool_list()}))
        elif method != "tools/call":
            await write(result(request_id, {}))
        else:
            match message["params"]["name"]:
                case "gigabytes":
                    await gigabytes(request_id)
                case "endless":
                    await stream(0.05)
                case "flood":
                    await stream(0.0)
                case "garbage":
                    await write(b"\x00\xff{not json at all")
                case "wrong_id":
                    await write(result(9999, {"content": []}))
                case _:
                    content = [{"type": "text", "text": json.dumps(message["params"].get("arguments"))}]
                    await write(result(request_id, {"content": content, "isError": False}))

    async for line in _lines(reader):
        task = asyncio.create_task(handle(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _lines(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while line := await reader.readline():
        if line.strip():
            yield line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int)
    parser.add_argument("--stdio", action="store_true")
    args = parser.parse_args()
    if args.stdio:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
            asyncio.run(serve_stdio())
    else:
        serve_http(args.port)


if __name__ == "__main__":
    main()
