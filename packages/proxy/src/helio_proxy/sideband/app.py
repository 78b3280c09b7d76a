"""The SDK sideband: a small JSON API on the ``sdk`` port, a FastAPI app behind a guard layer.

The guards are a thin ASGI layer in front of the FastAPI routes, because the wire contract fixes
their order (and FastAPI would otherwise read bodies, match routes and validate before checking
the token). They run in a fixed order and the first that fails answers: any ``Origin`` (403), ``OPTIONS``
(403), a body over 1 MiB (413, by ``Content-Length`` and while reading), a missing or wrong bearer
token except on ``/healthz`` (401), a non-JSON body (400), an unknown path (404), a wrong method
(405), a write while shutting down (503). Then the FastAPI route validates its fields (400)
and answers. Its OpenAPI schema is ``GET /openapi.json`` (token required). Every error is
``{"error", "code", "details"?}`` (see :mod:`.errors`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import parse_qsl, unquote

from fastapi import FastAPI, Query
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from helio_proxy.config.root import HelioConfig
from helio_proxy.evidence.allowlist import CurrentEvidenceIndex
from helio_proxy.evidence.store import SessionStore, StoreCapacityError
from helio_proxy.guards import HostGuard
from helio_proxy.sideband import models
from helio_proxy.sideband.auth import bearer_matches
from helio_proxy.sideband.errors import (
    BodyTooLarge,
    CapacityExhausted,
    HostForbidden,
    KeyNotAllowed,
    MethodForbidden,
    MethodNotAllowed,
    NotFound,
    OriginForbidden,
    ShuttingDown,
    SidebandError,
    Unauthorized,
)
from helio_proxy.sideband.requests import (
    NO_BODY,
    ContextRequest,
    DependenciesRequest,
    EvidenceRequest,
    decode_body,
)
from helio_proxy.sideband.state import render_state, wants_full_view

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_BODY_BYTES: Final = 1 << 20
"""Largest request body the sideband reads (1 MiB); one byte more is answered with 413."""

DRAIN_LIMIT_BYTES: Final = 16 << 20
"""A refused body up to this size is read to its end before the 413; past it the connection is dropped."""

WRITE_ROUTES: Final = ("/evidence", "/context", "/dependencies")
SCHEMA_PATH: Final = "/openapi.json"
T = TypeVar("T")

log = logging.getLogger(__name__)


class _ClientGone(Exception):
    """The client disconnected before its body was read; nothing can be answered."""


class _Request:
    def __init__(
        self, method: str, path: str, headers: Mapping[str, str], body: Any, query: Mapping[str, str]
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.query = query


class SidebandApp:
    """The sideband over a session store.

    ``config`` returns the current config snapshot (hot reload swaps it); the evidence-key
    allowlist is derived from it on each request, cached per snapshot.
    """

    def __init__(
        self,
        store: SessionStore,
        config: Callable[[], HelioConfig],
        token: str,
        *,
        bind_host: str | None = None,
        allowed_hosts: Iterable[str] | None = None,
    ) -> None:
        if not token:
            raise ValueError("the sideband needs a non-empty token")
        self._host_guard = HostGuard(bind_host, allowed_hosts) if bind_host is not None else None
        """DNS-rebinding guard on ``Host`` (``bind_host``: the listener's address)."""
        self.store = store
        self.index = CurrentEvidenceIndex(config)
        self._token = token
        self.shutting_down = False
        self.api = self._build_api()

    def begin_shutdown(self) -> None:
        """From now on writes are answered 503 ``sideband_shutting_down``; reads keep working."""
        self.shutting_down = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers: dict[str, str] = {}
        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            request = await self._guard(scope, receive, headers)
        except _ClientGone:
            return
        except SidebandError as exc:
            await _send_error(send, exc)
            return
        except Exception:
            log.exception("sideband: unexpected error on %s %s", scope.get("method"), scope.get("path"))
            await _send_json(send, 500, {"error": "internal error", "code": "internal_error"}, {})
            return
        # The route sees the percent-encoded path (a session id may hold an encoded '/') and the
        # body already read and decoded by the guards.
        inner: Scope = {**scope, "path": request.path, "root_path": ""}
        inner["state"] = {**dict(scope.get("state") or {}), "sideband_body": request.body}
        started = False

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.api(inner, _no_more_body, tracked)
        except Exception:
            log.exception("sideband: unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_json(send, 500, {"error": "internal error", "code": "internal_error"}, {})

    async def _guard(self, scope: Scope, receive: Receive, headers: Mapping[str, str]) -> _Request:
        method = str(scope["method"]).upper()
        if self._host_guard is not None:
            refused = self._host_guard.check(headers.get("host"))
            if refused is not None:
                raise HostForbidden(refused)
        if "origin" in headers:
            raise OriginForbidden("requests with an Origin header are refused")
        if method == "OPTIONS":
            raise MethodForbidden("OPTIONS requests are refused")
        raw = await _read_body(receive, headers)
        path = _raw_path(scope)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if path != "/healthz" and not bearer_matches(headers.get("authorization"), self._token):
            raise Unauthorized("missing or wrong bearer token")
        body = decode_body(raw) if raw else NO_BODY
        request = _Request(method, path, headers, body, query)
        self._route(request)
        return request

    def _route(self, request: _Request) -> None:
        """Refuse an unknown path (404), a wrong method (405), a write while shutting down (503)."""
        path = request.path
        segments = path.split("/")
        if path in ("/healthz", SCHEMA_PATH):
            allowed = "GET"
        elif path in WRITE_ROUTES:
            allowed = "POST"
        elif len(segments) == 4 and segments[1] == "session" and segments[2] and segments[3] == "state":
            allowed = "GET"
        else:
            raise NotFound(f"no route {path}")
        if request.method != allowed:
            raise MethodNotAllowed(f"{path} accepts {allowed} only", allow=allowed)
        if allowed == "POST" and self.shutting_down:
            raise ShuttingDown("the sideband is shutting down")

    def _build_api(self) -> FastAPI:
        api = FastAPI(
            title="Helio sideband",
            version="1",
            description="The SDK sideband on the sdk port. See docs/sideband-api.md.",
            openapi_url=None,
            docs_url=None,
            redoc_url=None,
            responses={
                status: {"model": models.SidebandErrorBody, "description": HTTPStatus(status).phrase}
                for status in (400, 401, 403, 404, 405, 413, 500, 503)
            },
        )

        async def sideband_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, SidebandError)
            return _error_response(exc)

        async def crashed(request: Request, exc: Exception) -> Response:
            # Logged where the exception surfaces again (``__call__``), after this answer.
            return _json(500, {"error": "internal error", "code": "internal_error"})

        api.add_exception_handler(SidebandError, sideband_error)
        api.add_exception_handler(Exception, crashed)

        def body_of(request: Request) -> Any:
            return request.scope["state"]["sideband_body"]

        def documented(model: type[BaseModel]) -> dict[str, Any]:
            schema = model.model_json_schema()
            return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}

        @api.get("/healthz", response_model=models.Health, summary="Liveness (no token needed)")
        async def healthz() -> Response:  # pyright: ignore[reportUnusedFunction]
            return _json(200, {"status": "ok"})

        @api.get(SCHEMA_PATH, include_in_schema=False)
        async def schema() -> Response:  # pyright: ignore[reportUnusedFunction]
            return _json(200, api.openapi())

        @api.post(
            "/evidence",
            status_code=201,
            response_model=models.EvidenceReceipt,
            openapi_extra=documented(models.EvidenceBody),
            summary="Mark evidence for a session",
        )
        async def evidence(request: Request) -> Response:  # pyright: ignore[reportUnusedFunction]
            return await self._guarded(self._evidence(EvidenceRequest.parse(body_of(request))))

        @api.post(
            "/context",
            status_code=201,
            response_model=models.Ok,
            openapi_extra=documented(models.ContextBody),
            summary="Set a context value for a session",
        )
        async def context(request: Request) -> Response:  # pyright: ignore[reportUnusedFunction]
            parsed = ContextRequest.parse(body_of(request))
            await self._guarded(self.store.put_context(parsed.session_id, parsed.key, parsed.value))
            return _json(201, {"ok": True})

        @api.post(
            "/dependencies",
            status_code=201,
            response_model=models.Ok,
            openapi_extra=documented(models.DependenciesBody),
            summary="Declare a tool's prerequisites in a session",
        )
        async def dependencies(request: Request) -> Response:  # pyright: ignore[reportUnusedFunction]
            declared = DependenciesRequest.parse(body_of(request))
            await self._guarded(
                self.store.add_dependencies(declared.session_id, declared.tool_name, declared.requires)
            )
            return _json(201, {"ok": True})

        @api.get(
            "/session/{session_id}/state",
            response_model=models.SessionState,
            summary="A session's evidence, context, completed calls and declared dependencies",
        )
        async def state(  # pyright: ignore[reportUnusedFunction]
            session_id: str,
            view: Annotated[
                Literal["full"] | None, Query(description="'full' adds verified and call_id")
            ] = None,
        ) -> Response:
            snapshot = await self.store.snapshot(unquote(session_id))
            return _json(
                200, render_state(snapshot, reference_shape=not wants_full_view({"view": view or ""}))
            )

        return api

    async def _guarded(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except StoreCapacityError as exc:
            raise CapacityExhausted(str(exc), limit=exc.limit, max=exc.value) from None

    async def _evidence(self, request: EvidenceRequest) -> Response:
        allowed = self.index.get().allowed_keys
        if request.evidence_key not in allowed:
            raise KeyNotAllowed.for_key(request.evidence_key, allowed)
        entry = await self.store.put_evidence(
            request.session_id,
            tool_name=request.tool_name,
            evidence_key=request.evidence_key,
            data=request.evidence_data,
            ttl_seconds=request.ttl_seconds,
            call_id=request.call_id,
        )
        return _json(
            201,
            {
                "ok": True,
                "evidence_key": entry.evidence_key,
                "expires_at": entry.expires_at,
                "verified": entry.verified,
            },
        )


def _raw_path(scope: Scope) -> str:
    """The percent-encoded path (so ``%2F`` inside a session id is not a separator)."""
    raw: Any = scope.get("raw_path")
    if isinstance(raw, bytes):
        # Some servers include the query string in raw_path; it is never part of a route.
        return raw.decode("latin-1").split("?", 1)[0]
    return str(scope["path"])


async def _read_body(receive: Receive, headers: Mapping[str, str]) -> bytes:
    declared = headers.get("content-length", "")
    too_large = BodyTooLarge(f"request body is over {MAX_BODY_BYTES} bytes")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        if int(declared) <= DRAIN_LIMIT_BYTES:
            await _drain(receive)
        raise too_large
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if size > MAX_BODY_BYTES:
            if more:
                await _drain(receive, size)
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(receive: Receive, size: int = 0) -> None:
    """Read and drop the rest of a refused body, so the client reads the 413 instead of a reset."""
    while size <= DRAIN_LIMIT_BYTES:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


_HEADERS: Final = {"content-type": "application/json", "cache-control": "no-store"}


def _json(status: int, body: dict[str, Any], extra: Mapping[str, str] | None = None) -> Response:
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(payload, status_code=status, headers={**_HEADERS, **(extra or {})})


def _error_response(exc: SidebandError) -> Response:
    extra = {"allow": exc.allow} if isinstance(exc, MethodNotAllowed) else {}
    return _json(exc.status, exc.body, extra)


async def _send_error(send: Send, exc: SidebandError) -> None:
    extra = {"allow": exc.allow} if isinstance(exc, MethodNotAllowed) else {}
    await _send_json(send, exc.status, exc.body, extra)


async def _no_more_body() -> MutableMapping[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send_json(send: Send, status: int, body: dict[str, Any], extra: Mapping[str, str]) -> None:
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "content-type": "application/json",
        "cache-control": "no-store",
        "content-length": str(len(payload)),
        **extra,
    }
    raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
