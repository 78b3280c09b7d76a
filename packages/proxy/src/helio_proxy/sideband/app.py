"""The SDK sideband: a small JSON API on the ``sdk`` port, as a raw ASGI app.

Guards run in a fixed order and the first that fails answers: any ``Origin`` (403), ``OPTIONS``
(403), a body over 1 MiB (413, by ``Content-Length`` and while reading), a missing or wrong bearer
token except on ``/healthz`` (401), a non-JSON body (400), an unknown path (404), a wrong method
(405), a write while shutting down (503). Then the route validates its fields (400).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from helio_proxy.config.root import HelioConfig
from helio_proxy.evidence.allowlist import CurrentEvidenceIndex
from helio_proxy.evidence.store import SessionStore, StoreCapacityError
from helio_proxy.sideband.auth import bearer_matches
from helio_proxy.sideband.errors import (
    BodyTooLarge,
    CapacityExhausted,
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


Answer = tuple[int, dict[str, Any]]


class SidebandApp:
    """The sideband over a session store.

    ``config`` returns the current config snapshot (hot reload swaps it); the evidence-key
    allowlist is derived from it on each request, cached per snapshot.
    """

    def __init__(self, store: SessionStore, config: Callable[[], HelioConfig], token: str) -> None:
        if not token:
            raise ValueError("the sideband needs a non-empty token")
        self.store = store
        self.index = CurrentEvidenceIndex(config)
        self._token = token
        self.shutting_down = False

    def begin_shutdown(self) -> None:
        """From now on writes are answered 503 ``sideband_shutting_down``; reads keep working."""
        self.shutting_down = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers: dict[str, str] = {}
        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            status, body = await self._answer(scope, receive, headers)
        except _ClientGone:
            return
        except SidebandError as exc:
            status, body = exc.status, exc.body
            extra = {"allow": exc.allow} if isinstance(exc, MethodNotAllowed) else {}
            await _send_json(send, status, body, extra)
            return
        except Exception:
            log.exception("sideband: unexpected error on %s %s", scope.get("method"), scope.get("path"))
            status, body = 500, {"error": "internal error", "code": "internal_error"}
        await _send_json(send, status, body, {})

    async def _answer(self, scope: Scope, receive: Receive, headers: Mapping[str, str]) -> Answer:
        method = str(scope["method"]).upper()
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
        return await self._route(_Request(method, path, headers, body, query))

    async def _route(self, request: _Request) -> Answer:
        path = request.path
        segments = path.split("/")
        session_id: str | None = None
        if path == "/healthz":
            allowed = "GET"
        elif path in WRITE_ROUTES:
            allowed = "POST"
        elif len(segments) == 4 and segments[1] == "session" and segments[2] and segments[3] == "state":
            allowed = "GET"
            session_id = unquote(segments[2])
        else:
            raise NotFound(f"no route {path}")
        if request.method != allowed:
            raise MethodNotAllowed(f"{path} accepts {allowed} only", allow=allowed)
        if allowed == "POST" and self.shutting_down:
            raise ShuttingDown("the sideband is shutting down")
        try:
            if path == "/healthz":
                return 200, {"status": "ok"}
            if path == "/evidence":
                return await self._evidence(EvidenceRequest.parse(request.body))
            if path == "/context":
                context = ContextRequest.parse(request.body)
                await self.store.put_context(context.session_id, context.key, context.value)
                return 201, {"ok": True}
            if path == "/dependencies":
                declared = DependenciesRequest.parse(request.body)
                await self.store.add_dependencies(declared.session_id, declared.tool_name, declared.requires)
                return 201, {"ok": True}
            assert session_id is not None
            snapshot = await self.store.snapshot(session_id)
            return 200, render_state(snapshot, reference_shape=not wants_full_view(request.query))
        except StoreCapacityError as exc:
            raise CapacityExhausted(str(exc), limit=exc.limit) from None

    async def _evidence(self, request: EvidenceRequest) -> Answer:
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
        return 201, {
            "ok": True,
            "evidence_key": entry.evidence_key,
            "expires_at": entry.expires_at,
            "verified": entry.verified,
        }


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
