"""Agent-facing streamable HTTP: ``POST/GET/DELETE /mcp`` and ``GET /healthz``.

Ingress checks run in this order and answer with HTTP errors (the only 4xx the proxy itself
produces on the MCP leg): Host → 403, Origin → 403, method → 405, Content-Type essence → 415,
body size → 413, JSON → 400/-32700, JSON-RPC envelope → 400/-32600. Everything past ingress
gets a JSON-RPC answer (governance blocks are HTTP 200).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from helio_proxy import __version__
from helio_proxy.config.sections import ListenConfig
from helio_proxy.gateway import Gateway, Inbound
from helio_proxy.gateway.exchange import Reply, error_reply
from helio_proxy.jsonrpc import INVALID_REQUEST, EnvelopeError, parse
from helio_proxy.transports.downstream.asgi import (
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
    send_bytes,
    send_reply,
)
from helio_proxy.transports.downstream.guards import (
    HostGuard,
    OriginGuard,
    accepts_event_stream,
    content_type_essence,
)

MCP_PATH: Final = "/mcp"
HEALTH_PATH: Final = "/healthz"

AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _reject(
    send: Send, status: int, code: int, message: str, request_id: str | int | None = None
) -> None:
    reply = error_reply(request_id, code, message, status=status)
    await send_bytes(send, status, reply.body, {}, "application/json")


class McpListenerApp:
    """The ASGI app on ``listen.port``."""

    def __init__(
        self, gateway: Gateway, listen: ListenConfig, extra: Mapping[str, AsgiApp] | None = None
    ) -> None:
        self.gateway = gateway
        self.extra = dict(extra or {})
        """Other endpoints on this port by exact path (Slack's signed callbacks), served without
        the browser guards: they authenticate every request themselves."""
        self.max_body = listen.max_body_bytes
        self.hosts = HostGuard(listen.host, listen.allowed_hosts)
        self.origins = OriginGuard(listen.allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            body = json.dumps({"status": "ok", "version": __version__}).encode()
            await send_bytes(send, 200, body, {}, "application/json")
            return
        if path in self.extra:
            await self.extra[path](scope, receive, send)
            return
        if path.rstrip("/") != MCP_PATH:
            await _reject(send, 404, INVALID_REQUEST, f"no MCP endpoint at {path}; use {MCP_PATH}")
            return
        headers = header_map(scope)
        problem = self.hosts.check(headers.get("host")) or self.origins.check(headers.get("origin"))
        if problem:
            await _reject(send, 403, INVALID_REQUEST, problem)
            return
        if method == "POST":
            await self._post(headers, receive, send)
        elif method == "GET":
            await send_reply(send, receive, await self.gateway.open_stream(headers))
        elif method == "DELETE":
            await send_reply(send, receive, await self.gateway.delete(headers))
        else:
            reply = error_reply(
                None, INVALID_REQUEST, f"method {method} is not allowed on {MCP_PATH}", status=405
            )
            await send_bytes(send, 405, reply.body, {"allow": "GET, POST, DELETE"}, "application/json")

    async def _post(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        essence = content_type_essence(headers.get("content-type"))
        if essence != "application/json":
            await _reject(
                send, 415, INVALID_REQUEST, f"Content-Type must be application/json (got {essence or 'none'})"
            )
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _reject(send, 413, INVALID_REQUEST, f"request body is larger than {self.max_body} bytes")
            return
        try:
            raw = await read_body(receive, self.max_body)
        except BodyTooLarge:
            await _reject(send, 413, INVALID_REQUEST, f"request body is larger than {self.max_body} bytes")
            return
        except ConnectionResetError:
            return
        try:
            message = parse(raw)
        except EnvelopeError as exc:
            await _reject(send, 400, exc.code, str(exc), exc.request_id)
            return
        inbound = Inbound(
            message=message, headers=headers, accepts_sse=accepts_event_stream(headers.get("accept"))
        )
        if message.method != "tools/call":
            await send_reply(send, receive, await self.gateway.post(inbound))
            return
        reply = await _unless_disconnected(self.gateway.post(inbound), receive)
        if reply is not None:
            await send_reply(send, receive, reply)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _unless_disconnected(work: Awaitable[Reply], receive: Receive) -> Reply | None:
    """Run a tool call, cancelling it if the client disconnects first (a call held for approval
    can wait minutes); ``None`` when the client is gone."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None
