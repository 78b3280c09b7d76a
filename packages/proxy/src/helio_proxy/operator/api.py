"""The operator REST API on the dashboard port (``/api/*``), and its live event stream.

Components (approvals, limits, budgets, audit views) contribute :class:`ApiRoute` entries; this
module owns what they share: authentication and roles, CSRF for cookie sessions, the Host guard
(DNS rebinding), body limits and the envelope conventions:

* one object: ``{"data": ...}``; a list: ``{"data": [...], "total", "limit", "offset"}``;
* an error: ``{"error": "<message>", "details": {...}?}`` with a fitting HTTP status, including a
  JSON 404 for any unknown ``/api/*`` path.

Open paths (no credentials): ``GET /api/health``, ``POST /api/auth/session`` (login) and
``POST /api/auth/logout``; the last two only for JSON from this dashboard's own origin (or none,
see :mod:`.origin`). The agent (MCP) and SDK (sideband) ports never serve these routes.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from helio_proxy.config.sections import DashboardConfig
from helio_proxy.operator.auth import (
    CSRF_HEADER,
    OPEN_MODE_OPERATOR,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    OperatorAuth,
    Principal,
    csrf_ok,
)
from helio_proxy.operator.events import EventBus
from helio_proxy.operator.origin import cookie_endpoint_refusal
from helio_proxy.transports.downstream.guards import HostGuard

MAX_API_BODY: Final = 1 << 20
"""Largest request body the operator API reads (1 MiB)."""

Role = Literal["viewer", "approver", "admin"]
Handler = Callable[[Request, Principal], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One endpoint: ``method`` + Starlette ``path`` (``/api/approvals/{id}``), the role it needs."""

    method: str
    path: str
    handler: Handler
    role: Role = "viewer"


class ApiError(Exception):
    """Raised by handlers; becomes ``{"error": message, "details"?}`` with ``status``."""

    def __init__(self, status: int, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def error(status: int, message: str, details: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"data": data}, status_code=status)


def page(items: list[Any], total: int, limit: int, offset: int) -> JSONResponse:
    return JSONResponse({"data": items, "total": total, "limit": limit, "offset": offset})


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in ``[low, high]`` (400 otherwise)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name!r} must be between {low} and {high}")
    return value


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body (400 if not JSON or not an object, 413 if over 1 MiB)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_API_BODY:
        raise ApiError(413, f"request body over {MAX_API_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_API_BODY:
            raise ApiError(413, f"request body over {MAX_API_BODY} bytes")
    if not body:
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "request body must be a JSON object")
    return value  # pyright: ignore[reportUnknownVariableType]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class OperatorApi:
    """The ASGI app of the dashboard listener."""

    def __init__(
        self,
        config: DashboardConfig,
        bus: EventBus,
        routes: Iterable[ApiRoute] = (),
        *,
        version: str = "",
        auth: OperatorAuth | None = None,
        ui: ASGIApp | None = None,
    ) -> None:
        self.ui = ui
        """Serves every non-``/api/`` path (the operator console), when installed."""
        self.config = config
        self.bus = bus
        self.auth = auth or OperatorAuth(config)
        self.version = version
        self.started = time.monotonic()
        self._host_guard = HostGuard(config.host, None)
        own = [
            Route("/api/health", self._health, methods=["GET"]),
            Route("/api/auth/session", self._login, methods=["POST"]),
            Route("/api/auth/session", self._guard(self._whoami, "viewer"), methods=["GET"]),
            Route("/api/auth/logout", self._logout, methods=["POST"]),
            Route("/api/events", self._guard(self._events, "viewer"), methods=["GET"]),
        ]
        extra = [Route(r.path, self._guard(r.handler, r.role), methods=[r.method]) for r in routes]
        self._router = Router(routes=[*own, *extra])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._router(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refused = self._host_guard.check(headers.get("host"))
        if refused is not None:
            await error(403, refused)(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith("/api/") and self.ui is not None:
            await self.ui(scope, receive, send)
            return
        if not path.startswith("/api/"):
            await error(
                404, "not found: the dashboard UI is not part of this build; the REST API is under /api/"
            )(scope, receive, send)
            return
        matched = any(route.matches(scope)[0].value == 2 for route in self._router.routes)
        if not matched:
            partial = any(route.matches(scope)[0].value == 1 for route in self._router.routes)
            if partial:
                await error(405, f"method {scope['method']} not allowed on {path}")(scope, receive, send)
            else:
                await error(404, f"unknown API path {path}")(scope, receive, send)
            return
        await self._router(scope, receive, send)

    # -- authentication -------------------------------------------------------------------------

    def authenticate(self, request: Request) -> tuple[Principal | None, bool]:
        """``(principal, via_cookie)``; a cookie session on a mutating request must pass CSRF."""
        bearer = request.headers.get("authorization")
        if bearer:
            return self.auth.from_bearer(bearer), False
        session = self.auth.session(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            if request.method not in ("GET", "HEAD") and not csrf_ok(
                session, request.headers.get(CSRF_HEADER)
            ):
                raise ApiError(403, f"missing or wrong {CSRF_HEADER} header (send the csrf_token from login)")
            return session.principal, True
        if self.auth.open_mode:
            return Principal(OPEN_MODE_OPERATOR, "admin", "open"), False
        return None, False

    def _guard(self, handler: Handler, role: Role) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                principal, _ = self.authenticate(request)
                if principal is None:
                    return error(
                        401,
                        "authentication required: send 'Authorization: Bearer <dashboard.api_secret or "
                        "operator secret>' or log in with POST /api/auth/session",
                    )
                if not principal.can(role):
                    return error(403, f"operator {principal.name!r} lacks the {role!r} role")
                return await handler(request, principal)
            except ApiError as exc:
                return error(exc.status, exc.message, exc.details)

        return endpoint

    # -- own endpoints ----------------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "version": self.version, "uptime": round(time.monotonic() - self.started, 3)}
        )

    async def _login(self, request: Request) -> Response:
        refused = cookie_endpoint_refusal(request.headers, request.url.scheme)
        if refused is not None:
            return error(*refused)
        client = _client(request)
        # Counted before the first await, so concurrent guesses cannot all pass the check.
        wait = self.auth.begin_login(client)
        if wait is not None:
            response = error(429, "too many failed logins from this address; try again later")
            response.headers["retry-after"] = str(int(wait))
            return response
        try:
            body = await read_json(request)
        except ApiError as exc:
            return error(exc.status, exc.message)
        secret = body.get("secret")
        if not isinstance(secret, str) or not secret:
            return error(400, 'body must be {"secret": "..."}')
        made = self.auth.login(secret, client)
        if made is None:
            return error(401, "wrong secret")
        cookie, session = made
        response = ok(
            {
                "operator": session.principal.name,
                "role": session.principal.role,
                "csrf_token": session.csrf_token,
                "expires_in": int(SESSION_LIFETIME),
            }
        )
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(SESSION_LIFETIME),
            httponly=True,
            samesite="lax",
            secure=secure,
            path="/",
        )
        return response

    async def _whoami(self, request: Request, principal: Principal) -> Response:
        return ok({"operator": principal.name, "role": principal.role, "via": principal.via})

    async def _logout(self, request: Request) -> Response:
        refused = cookie_endpoint_refusal(request.headers, request.url.scheme)
        if refused is not None:
            return error(*refused)
        self.auth.logout(request.cookies.get(SESSION_COOKIE))
        response = ok({"logged_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def _events(self, request: Request, principal: Principal) -> Response:
        heartbeat = self.config.sse_heartbeat_interval.seconds

        async def stream() -> AsyncIterator[bytes]:
            yield b": connected\n\n"
            async for event in self.bus.subscribe(heartbeat):
                yield event.sse()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )
