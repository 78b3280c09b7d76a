"""Small ASGI helpers shared by the agent-facing endpoints (kept raw for speed on the hot path)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final

from helio_proxy.gateway.exchange import EmptyReply, JsonReply, Reply, StreamReply
from helio_proxy.transports.sse import encode_message

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

StreamTracker = Callable[[str, int], None]
"""Told ``(transport, +1)`` when a long-lived server-to-client stream opens and ``(transport, -1)``
when it ends (``streamable_http``: ``GET /mcp``; ``sse``: legacy ``GET /sse``); metrics count them."""

SSE_HEADERS: Mapping[str, str] = {"cache-control": "no-cache, no-transform", "x-accel-buffering": "no"}

STREAM_HEARTBEAT_SECONDS: Final = 15.0
"""A stream the proxy writes (an SSE answer, ``GET /mcp``) that has sent nothing for this long gets
an SSE comment, so idle timeouts of load balancers between agent and proxy do not cut it (the
upstream's own keep-alive comments are not messages and are not relayed)."""

HEARTBEAT: Final = b": ping\n\n"
"""The SSE comment an idle stream gets (here, and on legacy SSE streams every 30 s)."""


class BodyTooLarge(Exception):
    """The request body exceeded the configured cap."""


def header_map(scope: Scope) -> dict[str, str]:
    """Lower-cased request headers (the last value wins for repeated names)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


def peer(scope: Scope) -> tuple[str, int] | None:
    """The client's address and port (``None`` when the server does not know them)."""
    client = scope.get("client")
    if not client:
        return None
    host, port = client
    return str(host), int(port)


async def read_body(receive: Receive, limit: int) -> bytes:
    """Read the whole request body, raising :class:`BodyTooLarge` past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away while sending the body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _encode_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


async def send_bytes(
    send: Send, status: int, body: bytes, headers: Mapping[str, str], content_type: str | None
) -> None:
    # One pass over the relayed headers, no intermediate dict: the proxy's own two come last.
    encoded = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in headers.items()
        if name != "content-type" and name != "content-length"
    ]
    if content_type:
        encoded.append((b"content-type", content_type.encode("latin-1")))
    encoded.append((b"content-length", str(len(body)).encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": encoded})
    await send({"type": "http.response.body", "body": body})


async def send_reply(send: Send, receive: Receive, reply: Reply) -> None:
    """Write a gateway reply: JSON, an empty status, or a stream of messages as SSE events (stopped
    when the client disconnects)."""
    if isinstance(reply, JsonReply):
        await send_bytes(send, reply.status, reply.body, reply.headers, "application/json")
        return
    if isinstance(reply, EmptyReply):
        await send_bytes(send, reply.status, b"", reply.headers, None)
        return
    await _send_stream(send, receive, reply)


async def _send_stream(send: Send, receive: Receive, reply: StreamReply) -> None:
    headers = {**reply.headers, **SSE_HEADERS, "content-type": "text/event-stream"}
    await send({"type": "http.response.start", "status": reply.status, "headers": _encode_headers(headers)})
    clock = asyncio.get_running_loop().time
    last_sent = clock()

    async def pump() -> None:
        nonlocal last_sent
        async for message in reply.messages:
            await send({"type": "http.response.body", "body": encode_message(message), "more_body": True})
            last_sent = clock()

    async def wait_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pump_task = asyncio.ensure_future(pump())
    watch_task = asyncio.ensure_future(wait_disconnect())
    try:
        while True:
            idle = clock() - last_sent
            done, _ = await asyncio.wait(
                {pump_task, watch_task},
                timeout=max(0.0, STREAM_HEARTBEAT_SECONDS - idle),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if done:
                break
            if clock() - last_sent >= STREAM_HEARTBEAT_SECONDS:
                await send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})
                last_sent = clock()
    finally:
        for task in (pump_task, watch_task):
            if not task.done():
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch_task
        with contextlib.suppress(asyncio.CancelledError):
            await pump_task
        aclose = getattr(reply.messages, "aclose", None)
        if aclose is not None:
            await aclose()
    if not watch_task.cancelled() and watch_task.done():
        return  # client went away: nothing more to send
    await send({"type": "http.response.body", "body": b"", "more_body": False})
