"""Agent-facing streamable HTTP: ``POST/GET/DELETE /mcp`` and ``GET /healthz``; the listener also
routes legacy HTTP+SSE (``/sse``, ``/messages``: :mod:`.sse`) and each mount's ``/<name>`` paths.

Ingress checks run in this order and answer with HTTP errors (the only 4xx the proxy itself
produces on the MCP leg): Host → 403, Origin → 403, agent authentication (``listen.auth``,
:mod:`.agent_auth`) → 401/403, a session of another agent → 403, method → 405, Content-Type essence → 415,
body size → 413, JSON → 400/-32700, JSON-RPC envelope → 400/-32600 (a repeated object key or a
``tools/call`` notification is also recorded as ``rejected``). Everything past ingress gets a
JSON-RPC answer (governance blocks are HTTP 200). A ``GET /mcp`` stream past ``listen.max_streams``
(open in this process, over every mount) gets 503 with ``Retry-After`` and ``data.reason:
capacity_exhausted``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from helio_proxy import __version__
from helio_proxy.config.sections import ListenConfig
from helio_proxy.gateway import Gateway, Inbound
from helio_proxy.gateway.exchange import ClientDisconnected, StreamReply, error_reply
from helio_proxy.guards import (
    HostGuard,
    OriginGuard,
    accepts_event_stream,
    content_type_essence,
    protocol_header_problem,
)
from helio_proxy.jsonlimits import body_limit_data
from helio_proxy.jsonrpc import INVALID_REQUEST, EnvelopeError, parse_any
from helio_proxy.session.binding import SessionOwners
from helio_proxy.transports.downstream.agent_auth import (
    METADATA_PATH,
    AgentAuthenticator,
    AuthFailure,
    protected_resource_metadata,
)
from helio_proxy.transports.downstream.asgi import (
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    StreamTracker,
    header_map,
    peer,
    read_body,
    send_bytes,
    send_reply,
)
from helio_proxy.transports.downstream.batch import answer_batch, batch_refusal
from helio_proxy.transports.downstream.sse import LegacySseEndpoint

MCP_PATH: Final = "/mcp"
SSE_PATH: Final = "/sse"
MESSAGES_PATH: Final = "/messages"
HEALTH_PATH: Final = "/healthz"
STREAMABLE_HTTP: Final = "streamable_http"
"""The transport label of a ``GET /mcp`` stream (see :data:`.asgi.StreamTracker`)."""

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
    headers: Mapping[str, str] | None = None,
) -> None:
    reply = error_reply(request_id, code, message, data, status=status)
    await send_bytes(send, status, reply.body, headers or {}, "application/json")


class McpListenerApp:
    """The ASGI app on ``listen.port``: ``/mcp`` (streamable HTTP) and ``/sse`` + ``/messages``
    (legacy HTTP+SSE) for every mount, and ``/healthz``.

    ``gateways`` maps mount names to gateways: ``None`` is the single ``upstream:`` form, served
    at the bare paths; names (the ``upstreams:`` list) are served at ``/mcp/<name>``,
    ``/sse/<name>`` and ``/messages/<name>``.

    ``extra``: other endpoints on this port by exact path (Slack's signed callbacks), served
    without the browser guards: they authenticate every request themselves.

    ``streams`` is told when a ``GET`` stream (either transport) opens and ends.
    """

    def __init__(
        self,
        gateways: Gateway | Mapping[str | None, Gateway],
        listen: ListenConfig,
        extra: Mapping[str, AsgiApp] | None = None,
        streams: StreamTracker | None = None,
        problems: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.problems = problems
        """What is wrong now (``{"audit_unavailable": why}``): ``/healthz`` answers 503 ``degraded``
        with them while there are any."""
        self.gateways: dict[str | None, Gateway] = (
            {None: gateways} if isinstance(gateways, Gateway) else dict(gateways)
        )
        self.gateway = next(iter(self.gateways.values()))
        self.extra = dict(extra or {})
        self.streams = streams
        self.max_body = listen.max_body_bytes
        self.limits = listen.json_limits
        self.max_streams = listen.max_streams
        """The cap on open ``GET /mcp`` streams over every mount (``listen.max_streams``)."""
        self.open_streams = 0
        """``GET /mcp`` streams open now, and those being opened (a place is taken before asking the upstream)."""
        self.hosts = HostGuard(listen.host, listen.allowed_hosts)
        self.origins = OriginGuard(listen.allowed_origins, listen.host)
        self.auth_config = listen.auth
        self.auth = AgentAuthenticator(listen.auth) if listen.auth is not None else None
        """``None``: agents are not authenticated (``listen.auth`` unset)."""
        self.owners: dict[str | None, SessionOwners] = {name: SessionOwners() for name in self.gateways}
        """Each mount's ``Mcp-Session-Id`` → the agent that minted it (with ``listen.auth``)."""
        self.sse: dict[str | None, LegacySseEndpoint] = {
            name: LegacySseEndpoint(
                gateway,
                _mounted(MESSAGES_PATH, name),
                max_body=listen.max_body_bytes,
                limits=self.limits,
                max_sessions=listen.max_sse_sessions,
                streams=streams,
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
            problems = self.problems() if self.problems is not None else {}
            status = "degraded" if problems else "ok"
            body = json.dumps(
                {"status": status, "version": __version__, **({"problems": problems} if problems else {})}
            ).encode()
            await send_bytes(send, 503 if problems else 200, body, {}, "application/json")
            return
        if path in self.extra:
            await self.extra[path](scope, receive, send)
            return
        if path == METADATA_PATH or path.startswith(METADATA_PATH + "/"):
            await self._metadata(scope, send, path[len(METADATA_PATH) :])
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
        problem = protocol_header_problem(headers)
        if problem:
            await _reject(send, 400, INVALID_REQUEST, problem)
            return
        agent_id: str | None = None
        if self.auth is not None:
            agent_id = await self._authenticate(send, headers, kind, name)
            if agent_id is None:
                return
        if kind == SSE_PATH:
            await self._legacy_sse(scope, receive, send, headers, name, agent_id)
            return
        if kind == MESSAGES_PATH:
            if method != "POST":
                await _not_allowed(send, method, MESSAGES_PATH, "POST")
                return
            await self.sse[name].post(scope, receive, send, headers, agent_id=agent_id)
            return
        gateway = self.gateways[name]
        owners = self.owners[name]
        session = headers.get("mcp-session-id")
        if agent_id is not None and session and owners.claim(session, agent_id) is not None:
            await _reject(
                send, 403, INVALID_REQUEST, "this MCP session belongs to another agent; initialize your own"
            )
            return
        if method == "POST":
            await self._post(gateway, headers, receive, send, agent_id, owners, peer(scope))
        elif method == "GET":
            await self._get(gateway, headers, receive, send)
        elif method == "DELETE":
            reply = await gateway.end_session(headers)
            if session and reply.status < 300:
                owners.forget(session)
            await send_reply(send, receive, reply)
        else:
            await _not_allowed(send, method, MCP_PATH, "GET, POST, DELETE")

    def _base_url(self, headers: Mapping[str, str]) -> str:
        """The listener's URL as agents reach it (``listen.auth.public_url``, or from ``Host``)."""
        assert self.auth_config is not None
        if self.auth_config.public_url is not None:
            return self.auth_config.public_url.rstrip("/")
        return "http://" + (headers.get("host") or "localhost")

    async def _authenticate(
        self, send: Send, headers: dict[str, str], kind: str, name: str | None
    ) -> str | None:
        """The agent id, or ``None`` once the request has been refused (401/403).

        The ``Authorization`` header that was checked is taken out of ``headers``: the token is
        Helio's, so it is never relayed upstream, whatever ``forward_authorization`` says."""
        assert self.auth is not None
        base = self._base_url(headers)
        endpoint = _mounted(MCP_PATH if kind == MCP_PATH else SSE_PATH, name)
        try:
            identity = await self.auth.authenticate(
                headers.pop("authorization", None), [base + endpoint, base]
            )
        except AuthFailure as failure:
            reason = "insufficient_scope" if failure.insufficient_scope else "unauthorized"
            reply = error_reply(
                None, INVALID_REQUEST, f"Unauthorized: {failure}", {"reason": reason}, status=failure.status
            )
            challenge = failure.www_authenticate(base + METADATA_PATH + endpoint)
            await send_bytes(
                send, failure.status, reply.body, {"www-authenticate": challenge}, "application/json"
            )
            return None
        return identity.agent_id

    async def _metadata(self, scope: Scope, send: Send, suffix: str) -> None:
        """RFC 9728 protected-resource metadata (404 without ``listen.auth``)."""
        headers = header_map(scope)
        problem = self.hosts.check(headers.get("host"))
        if problem:
            await _reject(send, 403, INVALID_REQUEST, problem)
            return
        route = _route(suffix.rstrip("/")) if suffix else None
        if self.auth_config is None or (suffix and (route is None or route[1] not in self.gateways)):
            await _reject(send, 404, INVALID_REQUEST, f"no protected-resource metadata at {scope['path']}")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _not_allowed(send, scope["method"], scope["path"], "GET")
            return
        base = self._base_url(headers)
        if route is not None:
            kind, name = route
            resource = base + _mounted(MCP_PATH if kind == MCP_PATH else SSE_PATH, name)
        else:
            resource = base
        body = json.dumps(protected_resource_metadata(self.auth_config, resource)).encode()
        await send_bytes(send, 200, body, {"cache-control": "max-age=300"}, "application/json")

    async def _get(self, gateway: Gateway, headers: dict[str, str], receive: Receive, send: Send) -> None:
        if self.open_streams >= self.max_streams:
            await _reject(
                send,
                503,
                INVALID_REQUEST,
                f"too many open streams ({self.max_streams}); close one or try again later",
                data={"reason": "capacity_exhausted", "limit": "max_streams", "max": self.max_streams},
                headers={"retry-after": "5"},
            )
            return
        self.open_streams += 1  # the place is taken while the upstream is asked
        try:
            reply = await gateway.listen(headers)
            if not isinstance(reply, StreamReply):
                await send_reply(send, receive, reply)
                return
            if self.streams is not None:
                self.streams(STREAMABLE_HTTP, 1)
            try:
                await send_reply(send, receive, reply)
            finally:
                if self.streams is not None:
                    self.streams(STREAMABLE_HTTP, -1)
        finally:
            self.open_streams -= 1

    async def _legacy_sse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        name: str | None,
        agent_id: str | None,
    ) -> None:
        method: str = scope["method"]
        if method == "GET":
            await self.sse[name].open(scope, receive, send, headers, agent_id=agent_id)
        elif method == "POST":
            # The reference posts messages to the SSE path itself (``POST /sse?sessionId=``).
            await self.sse[name].post(scope, receive, send, headers, agent_id=agent_id)
        else:
            await _not_allowed(send, method, SSE_PATH, "GET, POST")

    async def _post(
        self,
        gateway: Gateway,
        headers: dict[str, str],
        receive: Receive,
        send: Send,
        agent_id: str | None,
        owners: SessionOwners,
        client: tuple[str, int] | None,
    ) -> None:
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
                await send_reply(send, receive, await gateway.refuse(exc, headers, agent_id=agent_id))
                return
            await _reject(send, 400, exc.code, str(exc), exc.request_id)
            return
        if isinstance(message, list):
            refused = batch_refusal(headers)
            if refused is not None:
                await _reject(send, 400, INVALID_REQUEST, refused)
                return
            reply = await answer_batch(gateway, message, headers, client, agent_id=agent_id)
            await send_reply(send, receive, reply)
            return
        if message.method != "tools/call":
            inbound = Inbound(
                message=message,
                headers=headers,
                accepts_sse=accepts_event_stream(headers.get("accept")),
                agent_id=agent_id,
            )
            reply = await gateway.handle(inbound)
            minted = reply.headers.get("mcp-session-id")
            if agent_id is not None and minted:
                owners.claim(minted, agent_id)
            await send_reply(send, receive, reply)
            return

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        inbound = Inbound(
            message=message,
            headers=headers,
            accepts_sse=accepts_event_stream(headers.get("accept")),
            disconnected=disconnected,
            agent_id=agent_id,
            peer=client,
        )
        try:
            reply = await gateway.handle(inbound)
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
