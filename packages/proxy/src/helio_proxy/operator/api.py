"""The operator REST API on the dashboard port (``/api/*``): a FastAPI app, and its live events.

Components (approvals, limits, budgets, the console's audit views) contribute routes; this module
owns what they share: authentication and roles, CSRF for cookie sessions, the Host guard (DNS
rebinding), body limits, the OpenAPI schema and the conventions:

* one object: ``{"data": ...}``; an offset page: ``{"data": [...], "total", "limit", "offset"}``;
  a keyset page: ``{"data": [...], "limit", "next_cursor"}``;
* every error, from a handler, the framework (validation, unknown path, wrong method) or a bug:
  ``{"error": "<message>", "code": "<snake_case>", "details": {...}?}`` with a fitting status,
  including a JSON 404 for any unknown ``/api/*`` path.

Open paths (no credentials): ``GET /api/health``, ``POST /api/auth/session`` (login),
``POST /api/auth/token-exchange`` (a one-time login link) and ``POST /api/auth/logout``; the last
three only for JSON from this dashboard's own origin (or none, see :mod:`.origin`). The schema
(``/api/openapi.json``) and its browsable docs (``/api/docs``) need a viewer. Every path outside
``/api/`` goes to the console UI when one is installed. The agent (MCP) and SDK (sideband) ports
never serve these routes.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Any, Final, Literal, TypeVar

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.routing import APIRouter
from fastapi.security import APIKeyCookie, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from helio_proxy import jsonlimits
from helio_proxy.config.sections import DashboardConfig
from helio_proxy.guards import HostGuard
from helio_proxy.operator import models
from helio_proxy.operator.auth import (
    CSRF_HEADER,
    OPEN_MODE_OPERATOR,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    LoginSession,
    OperatorAuth,
    Principal,
    csrf_ok,
)
from helio_proxy.operator.events import EventBus
from helio_proxy.operator.origin import cookie_endpoint_refusal

log = logging.getLogger("helio_proxy.operator.api")

MAX_API_BODY: Final = 1 << 20
"""Largest request body the operator API reads (1 MiB)."""

Role = Literal["viewer", "approver", "admin"]
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request, Principal], Awaitable[Response]]

ERROR_CODES: Final = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}
"""The ``code`` an error gets when its raiser names none."""

_PATH_PARAM: Final = re.compile(r"{(\w+)}")


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter of an :class:`ApiRoute`, for the schema (the handler parses it)."""

    name: str
    schema: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One endpoint: ``method`` + path (``/api/approvals/{id}``), the role it needs, its schema."""

    method: str
    path: str
    handler: Handler
    role: Role = "viewer"
    summary: str = ""
    response_model: Any = None
    """The 200 answer's model (``None``: a file or free-form JSON)."""
    params: Sequence[Param] = ()
    body: type[BaseModel] | None = None
    media_type: str | None = None
    """The answer's media type when it is not JSON (``text/csv`` for exports)."""
    tags: Sequence[str] = field(default=())


class ApiError(Exception):
    """Raised by handlers; becomes ``{"error": message, "code", "details"?}`` with ``status``."""

    def __init__(
        self, status: int, message: str, details: dict[str, Any] | None = None, *, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.code = code or ERROR_CODES.get(status, "error")


def error(
    status: int, message: str, details: dict[str, Any] | None = None, *, code: str | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "code": code or ERROR_CODES.get(status, "error")}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"data": data}, status_code=status, headers={"cache-control": "no-store"})


def page(items: list[Any], total: int, limit: int, offset: int) -> JSONResponse:
    return JSONResponse(
        {"data": items, "total": total, "limit": limit, "offset": offset},
        headers={"cache-control": "no-store"},
    )


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
    """The request's JSON object body (400 if not JSON or not an object, 413 if over 1 MiB,
    422 ``input_limit_exceeded`` past a JSON cap of :mod:`helio_proxy.jsonlimits`)."""
    too_large = ApiError(
        413, f"request body over {MAX_API_BODY} bytes", {"limit": "max_body_bytes", "max": MAX_API_BODY}
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_API_BODY:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_API_BODY:
            raise too_large
    if not body:
        return {}
    try:
        jsonlimits.check(bytes(body))
    except jsonlimits.InputLimitExceeded as exc:
        raise ApiError(422, str(exc), exc.details, code=jsonlimits.INPUT_LIMIT_EXCEEDED) from None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "request body must be a JSON object")
    return value  # pyright: ignore[reportUnknownVariableType]


async def read_model(request: Request, model: type[M]) -> M:
    """The body validated by ``model`` (400 ``invalid_request`` naming the fields)."""
    body = await read_json(request)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ApiError(400, "request body is not valid", {"errors": _errors(exc.errors())}) from None


def _errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in raw]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _openapi_error_responses() -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": models.ErrorBody, "description": HTTPStatus(status).phrase}
        for status in (400, 401, 403, 404, 405, 409, 413, 415, 429, 500)
    }


_bearer = HTTPBearer(auto_error=False, description="dashboard.api_secret or an operator's secret")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="the login session cookie")


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the authenticated :class:`Principal` holding ``role`` (401/403 otherwise)."""

    async def dependency(
        request: Request,
        _bearer_credentials: Annotated[Any, Depends(_bearer)] = None,
        _session_cookie: Annotated[Any, Depends(_cookie)] = None,
    ) -> Principal:
        api: OperatorApi = request.app.state.operator
        principal, _ = api.authenticate(request)
        if principal is None:
            raise ApiError(
                401,
                "authentication required: send 'Authorization: Bearer <dashboard.api_secret or "
                "operator secret>' or log in with POST /api/auth/session",
            )
        if not principal.can(role):
            raise ApiError(
                403,
                f"operator {principal.name!r} lacks the {role!r} role",
                {"required_role": role, "role": principal.role},
            )
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def _openapi_extra(route: ApiRoute) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(route.path)
    ]
    parameters += [
        {
            "name": p.name,
            "in": "query",
            "required": False,
            "schema": dict(p.schema),
            "description": p.description,
        }
        for p in route.params
    ]
    extra: dict[str, Any] = {"parameters": parameters} if parameters else {}
    if route.body is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": route.body.model_json_schema()}},
        }
    return extra


class OperatorApi:
    """The ASGI app of the dashboard listener: the Host guard, ``/api/*`` (FastAPI), the UI."""

    def __init__(
        self,
        config: DashboardConfig,
        bus: EventBus,
        routes: Iterable[ApiRoute] = (),
        *,
        version: str = "",
        auth: OperatorAuth | None = None,
        routers: Iterable[APIRouter] = (),
        ui: ASGIApp | None = None,
        on_subscribe: Callable[[], None] | None = None,
        allowed_hosts: Iterable[str] | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.auth = auth or OperatorAuth(config)
        self.version = version
        self.started = time.monotonic()
        self.ui = ui
        self._on_subscribe = on_subscribe
        self._host_guard = HostGuard(config.host, allowed_hosts)
        self.app = FastAPI(
            title="Helio operator API",
            version=version or "0",
            description="The REST API of the Helio dashboard listener. See docs/operator-api.md.",
            openapi_url=None,
            docs_url=None,
            redoc_url=None,
            responses=_openapi_error_responses(),
        )
        self.app.state.operator = self
        self._install_error_handlers()
        self._own_routes()
        for route in routes:
            self._add(route)
        for router in routers:
            self.app.include_router(router)
        self._schema: dict[str, Any] | None = None

    # -- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refused = self._host_guard.check(headers.get("host"))
        if refused is not None:
            await error(403, refused, code="host_forbidden")(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            scope["query_string"].decode("utf-8")
        except UnicodeDecodeError:
            # Starlette builds request.url from it as UTF-8 and fails (the fuzz suite found a 500).
            await error(400, "the query string is not UTF-8")(scope, receive, send)
            return
        if path.startswith("/api/") or path == "/api":
            await self.app(scope, receive, send)
            return
        if self.ui is not None:
            await self.ui(scope, receive, send)
            return
        await error(
            404, "not found: the dashboard UI is not part of this build; the REST API is under /api/"
        )(scope, receive, send)

    # -- errors ----------------------------------------------------------------------------------

    def _install_error_handlers(self) -> None:
        async def api_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, ApiError)
            response = error(exc.status, exc.message, exc.details, code=exc.code)
            if exc.status == 429 and exc.details and "retry_after" in exc.details:
                response.headers["retry-after"] = str(exc.details["retry_after"])
            return response

        async def invalid(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, RequestValidationError)
            return error(400, "request is not valid", {"errors": _errors(exc.errors())})

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, StarletteHTTPException)
            if exc.status_code == 404:
                return error(404, f"unknown API path {request.url.path}")
            if exc.status_code == 405:
                response = error(405, f"method {request.method} not allowed on {request.url.path}")
                allow = (exc.headers or {}).get("allow") or (exc.headers or {}).get("Allow")
                if allow:
                    response.headers["allow"] = allow
                return response
            return error(exc.status_code, str(exc.detail))

        async def crashed(request: Request, exc: Exception) -> Response:
            log.error(
                "operator API: unexpected error on %s %s", request.method, request.scope["path"], exc_info=exc
            )
            return error(500, "internal error")

        self.app.add_exception_handler(ApiError, api_error)
        self.app.add_exception_handler(RequestValidationError, invalid)
        self.app.add_exception_handler(StarletteHTTPException, http_error)
        self.app.add_exception_handler(Exception, crashed)

    # -- authentication -------------------------------------------------------------------------

    def authenticate(self, request: Request) -> tuple[Principal | None, bool]:
        """``(principal, via_cookie)``; a cookie session on a mutating request must pass CSRF."""
        principal, session = self._credentials(request)
        mutating = request.method not in ("GET", "HEAD")
        if session is not None and mutating and not csrf_ok(session, request.headers.get(CSRF_HEADER)):
            raise ApiError(
                403,
                f"missing or wrong {CSRF_HEADER} header (send the csrf_token from login)",
                code="csrf_failed",
            )
        return principal, session is not None

    def _credentials(self, request: Request) -> tuple[Principal | None, LoginSession | None]:
        bearer = request.headers.get("authorization")
        if bearer:
            return self.auth.from_bearer(bearer), None
        session = self.auth.session(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            return session.principal, session
        if self.auth.open_mode:
            return Principal(OPEN_MODE_OPERATOR, "admin", "open"), None
        return None, None

    # -- routes ----------------------------------------------------------------------------------

    def _add(self, route: ApiRoute) -> None:
        handler = route.handler
        guard = Depends(require(route.role))

        async def endpoint(request: Request, principal: Principal = guard) -> Response:
            return await handler(request, principal)

        responses: dict[int | str, dict[str, Any]] = {}
        if route.media_type is not None:
            responses[200] = {
                "content": {route.media_type: {"schema": {"type": "string"}}},
                "description": "a file",
            }
        self.app.add_api_route(
            route.path,
            endpoint,
            methods=[route.method],
            response_model=route.response_model,
            responses=responses,
            summary=route.summary or None,
            description=f"Role: `{route.role}`.",
            openapi_extra=_openapi_extra(route) or None,
            tags=list(route.tags) or None,
            name=f"{route.method.lower()}:{route.path}",
        )

    def _own_routes(self) -> None:
        app = self.app

        @app.get(
            "/api/health", response_model=models.Health, tags=["auth"], summary="Liveness and version (open)"
        )
        async def health() -> Response:  # pyright: ignore[reportUnusedFunction]
            return JSONResponse(
                {"status": "ok", "version": self.version, "uptime": round(time.monotonic() - self.started, 3)}
            )

        @app.get("/api/openapi.json", include_in_schema=False)
        async def openapi(principal: Viewer) -> Response:  # pyright: ignore[reportUnusedFunction]
            return JSONResponse(self.schema())

        @app.get("/api/docs", include_in_schema=False)
        async def docs(principal: Viewer) -> HTMLResponse:  # pyright: ignore[reportUnusedFunction]
            return get_swagger_ui_html(openapi_url="/api/openapi.json", title="Helio operator API")

        login_extra = {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": models.Secret.model_json_schema()}},
            }
        }
        token_extra = {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": models.LoginToken.model_json_schema()}},
            }
        }

        @app.post(
            "/api/auth/session",
            response_model=models.Data[models.Login],
            openapi_extra=login_extra,
            tags=["auth"],
            summary="Log in with a secret: sets the session cookie, answers the CSRF token (open)",
        )
        async def login(request: Request) -> Response:  # pyright: ignore[reportUnusedFunction]
            return await self._login(request, "secret")

        @app.post(
            "/api/auth/token-exchange",
            response_model=models.Data[models.Login],
            openapi_extra=token_extra,
            tags=["auth"],
            summary="Exchange a one-time login token (the link helio demo prints) for a session (open)",
        )
        async def token_exchange(request: Request) -> Response:  # pyright: ignore[reportUnusedFunction]
            return await self._login(request, "token")

        @app.get(
            "/api/auth/session", response_model=models.Data[models.WhoAmI], tags=["auth"], summary="Who am I"
        )
        async def whoami(request: Request, principal: Viewer) -> Response:  # pyright: ignore[reportUnusedFunction]
            data: dict[str, Any] = {"operator": principal.name, "role": principal.role, "via": principal.via}
            _, session = self._credentials(request)
            if session is not None:
                data["csrf_token"] = session.csrf_token
            return ok(data)

        @app.post(
            "/api/auth/logout",
            response_model=models.Data[models.LoggedOut],
            tags=["auth"],
            summary="Log out (open)",
        )
        async def logout(request: Request) -> Response:  # pyright: ignore[reportUnusedFunction]
            refused = cookie_endpoint_refusal(request.headers, request.url.scheme)
            if refused is not None:
                return error(*refused, code="origin_forbidden" if refused[0] == 403 else None)
            self.auth.logout(request.cookies.get(SESSION_COOKIE))
            response = ok({"logged_out": True})
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response

        @app.get(
            "/api/events",
            tags=["events"],
            summary="Live operator events (Server-Sent Events)",
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
        )
        async def events(principal: Viewer) -> Response:  # pyright: ignore[reportUnusedFunction]
            return self._events()

    async def _login(self, request: Request, kind: Literal["secret", "token"]) -> Response:
        refused = cookie_endpoint_refusal(request.headers, request.url.scheme)
        if refused is not None:
            return error(*refused, code="origin_forbidden" if refused[0] == 403 else None)
        client = _client(request)
        # Counted before the first await, so concurrent guesses cannot all pass the check.
        wait = self.auth.begin_login(client)
        if wait is not None:
            response = error(429, "too many failed logins from this address; try again later")
            response.headers["retry-after"] = str(int(wait))
            return response
        body = await read_json(request)
        value = body.get(kind)
        if not isinstance(value, str) or not value:
            return error(400, f'body must be {{"{kind}": "..."}}')
        if kind == "secret":
            made = self.auth.login(value, client)
        else:
            made = self.auth.redeem_login_token(value, client)
        if made is None:
            return error(401, "wrong secret" if kind == "secret" else "unknown, used or expired login token")
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

    def _events(self) -> Response:
        heartbeat = self.config.sse_heartbeat_interval.seconds
        if self._on_subscribe is not None:
            self._on_subscribe()

        events = self.bus.subscribe(heartbeat)  # before the response starts (see EventBus.subscribe)

        async def stream() -> AsyncIterator[bytes]:
            yield b": connected\n\n"
            async for event in events:
                yield event.sse()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    def schema(self) -> dict[str, Any]:
        """The OpenAPI document (built once)."""
        if self._schema is None:
            self._schema = self.app.openapi()
        return self._schema
