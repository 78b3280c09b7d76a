"""Agent-facing streamable HTTP: ``POST/GET/DELETE /mcp`` and ``GET /healthz``; the listener also
routes legacy HTTP+SSE (``/sse``, ``/messages``: :mod:`.sse`) and each mount's ``/<name>`` paths.

Ingress checks run in this order and answer with HTTP errors (the only 4xx the proxy itself
produces on the MCP leg): Host → 403, Origin → 403, method → 405, Content-Type essence → 415,
body size → 413, JSON → 400/-32700, JSON-RPC envelope → 400/-32600 (a repeated object key or a
``tools/call`` notification is also recorded as ``rejected``). Everything past ingress gets a
JSON-RPC answer (governance blocks are HTTP 200).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from helio_proxy import __version__
from helio_proxy.config.sections import ListenConfig
from helio_proxy.gateway import Gateway, Inbound
from helio_proxy.gateway.exchange import ClientDisconnected, error_reply
from helio_proxy.jsonlimits import body_limit_data
from helio_proxy.jsonrpc import INVALID_REQUEST, EnvelopeError, parse_any
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
from helio_proxy.transports.downstream.batch import answer_batch, batch_refusal
from helio_proxy.transports.downstream.guards import (
    HostGuard,
    OriginGuard,
    accepts_event_stream,
    content_type_essence,
)
from helio_proxy.transports.downstream.sse import LegacySseEndpoint

MCP_PATH: Final = "/mcp"
SSE_PATH: Final = "/sse"
MESSAGES_PATH: Final = "/messages"
HEALTH_PATH: Final = "/healthz"

AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _mounted(base: str, name: str | None) -> str:
    return base if name is None else f"{base}/{name}"


def _route(path: str) -> tuple[str, str | None] | None:
    """``/mcp`` → (``/mcp``, None); ``/sse/<name>`` → (``/sse``, name); anything else → None."""
    for base in (MCP_PATH, SSE_PATH, MESSAGES_PATH):
        if path == base:
            return base, None
        if path.startswith(base + "/"):
            name = path[len(base) + 1 :]
            return (base, name) if name and "/" not in name else None
    return None


async def _not_allowed(send: Send, method: str, path: str, allow: str) -> None:
    reply = error_reply(None, INVALID_REQUEST, f"method {method} is not allowed on {path}", status=405)
    await send_bytes(send, 405, reply.body, {"allow": allow}, "application/json")


async def _reject(
    send: Send,
    status: int,
    code: int,
    message: str,
    request_id: str | int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    reply = error_reply(request_id, code, message, data, status=status)
    await send_bytes(send, status, reply.body, {}, "application/json")


class McpListenerApp:
    """The ASGI app on ``listen.port``: ``/mcp`` (streamable HTTP) and ``/sse`` + ``/messages``
    (legacy HTTP+SSE) for every mount, and ``/healthz``.

    ``gateways`` maps mount names to gateways: ``None`` is the single ``upstream:`` form, served
    at the bare paths; names (the ``upstreams:`` list) are served at ``/mcp/<name>``,
    ``/sse/<name>`` and ``/messages/<name>``.

    ``extra``: other endpoints on this port by exact path (Slack's signed callbacks), served
    without the browser guards: they authenticate every request themselves.
    """

    def __init__(
        self,
        gateways: Gateway | Mapping[str | None, Gateway],
        listen: ListenConfig,
        extra: Mapping[str, AsgiApp] | None = None,
    ) -> None:
        self.gateways: dict[str | None, Gateway] = (
            {None: gateways} if isinstance(gateways, Gateway) else dict(gateways)
        )
        self.gateway = next(iter(self.gateways.values()))
        self.extra = dict(extra or {})
        self.max_body = listen.max_body_bytes
        self.limits = listen.json_limits
        self.hosts = HostGuard(listen.host, listen.allowed_hosts)
        self.origins = OriginGuard(listen.allowed_origins)
        self.sse: dict[str | None, LegacySseEndpoint] = {
            name: LegacySseEndpoint(
                gateway,
                _mounted(MESSAGES_PATH, name),
                max_body=listen.max_body_bytes,
                limits=self.limits,
                max_sessions=listen.max_sse_sessions,
            )
            for name, gateway in self.gateways.items()
        }
        """The legacy SSE endpoint of each mount (its open sessions, its cap)."""

    async def close(self) -> None:
        """Shutdown: close every open SSE stream (streamable HTTP requests drain on their own)."""
        for endpoint in self.sse.values():
            await endpoint.close()

    def _mounts_hint(self, base: str) -> str:
        names = sorted(name for name in self.gateways if name is not None)
        return ", ".join(f"{base}/{name}" for name in names)

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
        route = _route(path.rstrip("/"))
        if route is None or route[1] not in self.gateways:
            base = route[0] if route is not None and route[0] != MESSAGES_PATH else MCP_PATH
            if None in self.gateways:
                where = f"use {base}"
            elif route is not None and route[1] is None:
                where = f"this proxy serves several upstreams; use one of {self._mounts_hint(base)}"
            else:
                where = f"use one of {self._mounts_hint(base)}"
            await _reject(send, 404, INVALID_REQUEST, f"no MCP endpoint at {path}; {where}")
            return
        kind, name = route
        headers = header_map(scope)
        problem = self.hosts.check(headers.get("host")) or self.origins.check(headers.get("origin"))
        if problem:
            await _reject(send, 403, INVALID_REQUEST, problem)
            return
        if kind == SSE_PATH:
            await self._legacy_sse(scope, receive, send, headers, name)
            return
        if kind == MESSAGES_PATH:
            if method != "POST":
                await _not_allowed(send, method, MESSAGES_PATH, "POST")
                return
            await self.sse[name].post(scope, receive, send, headers)
            return
        gateway = self.gateways[name]
        if method == "POST":
            await self._post(gateway, headers, receive, send)
        elif method == "GET":
            await send_reply(send, receive, await gateway.open_stream(headers))
        elif method == "DELETE":
            await send_reply(send, receive, await gateway.delete(headers))
        else:
            await _not_allowed(send, method, MCP_PATH, "GET, POST, DELETE")

    async def _legacy_sse(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], name: str | None
    ) -> None:
        method: str = scope["method"]
        if method == "GET":
            await self.sse[name].open(scope, receive, send, headers)
        elif method == "POST":
            # The reference posts messages to the SSE path itself (``POST /sse?sessionId=``).
            await self.sse[name].post(scope, receive, send, headers)
        else:
            await _not_allowed(send, method, SSE_PATH, "GET, POST")

    async def _post(self, gateway: Gateway, headers: dict[str, str], receive: Receive, send: Send) -> None:
        essence = content_type_essence(headers.get("content-type"))
        if essence != "application/json":
            await _reject(
                send, 415, INVALID_REQUEST, f"Content-Type must be application/json (got {essence or 'none'})"
            )
            return
        declared = headers.get("content-length")
        too_large = f"request body is larger than {self.max_body} bytes"
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _reject(send, 413, INVALID_REQUEST, too_large, data=body_limit_data(self.max_body))
            return
        try:
            raw = await read_body(receive, self.max_body)
        except BodyTooLarge:
            await _reject(send, 413, INVALID_REQUEST, too_large, data=body_limit_data(self.max_body))
            return
        except ConnectionResetError:
            return
        try:
            message = parse_any(raw, self.limits)
        except EnvelopeError as exc:
            if exc.reason is not None:
                await send_reply(send, receive, await gateway.refuse(exc, headers))
                return
            await _reject(send, 400, exc.code, str(exc), exc.request_id)
            return
        if isinstance(message, list):
            refused = batch_refusal(headers)
            if refused is not None:
                await _reject(send, 400, INVALID_REQUEST, refused)
                return
            await send_reply(send, receive, await answer_batch(gateway, message, headers))
            return
        if message.method != "tools/call":
            inbound = Inbound(
                message=message, headers=headers, accepts_sse=accepts_event_stream(headers.get("accept"))
            )
            await send_reply(send, receive, await gateway.post(inbound))
            return

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        inbound = Inbound(
            message=message,
            headers=headers,
            accepts_sse=accepts_event_stream(headers.get("accept")),
            disconnected=disconnected,
        )
        try:
            reply = await gateway.post(inbound)
        except ClientDisconnected:
            return  # recorded by the gateway; no one is left to answer
        await send_reply(send, receive, reply)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
