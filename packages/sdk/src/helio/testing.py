"""A fake Helio sideband for tests: no proxy, no network, no sleeps.

``FakeSideband`` is a ``Transport`` that answers in process exactly as the proxy's sideband does
(``docs/sideband-api.md``): same routes, same guards in the same order, same status codes and error
codes. It records every call, and ``serve()`` exposes the same behaviour on a real local port::

    fake = FakeSideband(token="t0k", allowed_keys=["order_data"], clock=ManualClock())
    with fake.context() as ctx:
        ctx.mark_evidence("orders.lookup", "order_data", {"id": 7})
    assert fake.calls[-1].status == 201
"""

import json
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from helio import _fake_rules as rules
from helio._client import HelioClient
from helio._context import HelioContext
from helio._fake_rules import Rejection
from helio._fake_server import serve_on_loopback
from helio._fake_store import SessionStore
from helio._models import SessionState, parse_session_state
from helio._transport import TransportRequest, TransportResponse
from helio._wire import (
    ALLOWED_KEYS_PREVIEW,
    CODE_BODY_TOO_LARGE,
    CODE_KEY_NOT_ALLOWED,
    CODE_METHOD_FORBIDDEN,
    CODE_METHOD_NOT_ALLOWED,
    CODE_NOT_FOUND,
    CODE_ORIGIN_FORBIDDEN,
    CODE_SHUTTING_DOWN,
    CODE_UNAUTHORIZED,
    DEFAULT_TTL_SECONDS,
    MAX_BODY_BYTES,
)

__all__ = ["FakeSideband", "ManualClock", "RecordedCall"]

_IN_PROCESS_URL = "http://helio-fake-sideband.invalid"
_POST_ROUTES = ("/evidence", "/context", "/dependencies")


class ManualClock:
    """A clock for ``FakeSideband(clock=...)`` that moves only when told: epoch seconds as float."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        with self._lock:
            self._now += seconds


@dataclass(frozen=True)
class RecordedCall:
    """One request the fake answered. ``json`` is the decoded request body (``None`` when there was
    none or it was not JSON) and ``response`` the decoded answer; header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    json: Any = None
    status: int = 0
    response: Any = None


class FakeSideband:
    """An in-process stand-in for the proxy's sideband.

    ``token``: when non-empty, every route but ``/healthz`` wants ``Authorization: Bearer <token>``.
    ``allowed_keys``: the evidence keys ``POST /evidence`` accepts. The proxy accepts only keys that
    some policy rule's ``evidence.requires`` names, so pass those to be faithful; ``None`` accepts
    any key. ``clock``: epoch seconds as float, for evidence expiry (default ``time.time``; see
    ``ManualClock``). Safe to call from several threads.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        allowed_keys: Iterable[str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._token = token or ""
        self._allowed = None if allowed_keys is None else frozenset(allowed_keys)
        self._store = SessionStore(clock or time.time)
        self._calls: list[RecordedCall] = []
        self._lock = threading.Lock()
        self._shutting_down = False

    @property
    def url(self) -> str:
        """The base URL the in-process helpers use; it names no real host."""
        return _IN_PROCESS_URL

    @property
    def token(self) -> str | None:
        """The configured token, or ``None`` when the fake runs open."""
        return self._token or None

    @property
    def calls(self) -> list[RecordedCall]:
        """A copy of every request answered so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def clear_calls(self) -> None:
        """Forget the recorded calls (state is kept)."""
        with self._lock:
            self._calls.clear()

    def client(self, *, token: str | None = None, timeout: float = 5.0) -> HelioClient:
        """A ``HelioClient`` wired to this fake, sending the fake's token unless ``token`` is given."""
        return HelioClient(self.url, timeout=timeout, token=self._pick(token), transport=self)

    def context(self, session_id: str | None = None, *, token: str | None = None) -> HelioContext:
        """A ``HelioContext`` wired to this fake, sending the fake's token unless ``token`` is given."""
        return HelioContext(self.url, session_id, token=self._pick(token), transport=self)

    def state(self, session_id: str) -> SessionState:
        """What ``GET /session/{session_id}/state`` would return now, without recording a call."""
        with self._lock:
            return parse_session_state(self._store.snapshot(session_id))

    def record_tool_call(
        self, session_id: str, tool_name: str, succeeded: bool = True, call_id: str | None = None
    ) -> str:
        """Simulate the proxy forwarding a ``tools/call`` in the session; returns its call id.

        Evidence later marked with that ``call_id`` and the same ``tool_name`` is ``verified`` when
        the call succeeded.
        """
        call_id = call_id or uuid.uuid4().hex
        with self._lock:
            self._store.record_tool_call(session_id, tool_name, succeeded=succeeded, call_id=call_id)
        return call_id

    def begin_shutdown(self) -> None:
        """From now on, writes get 503 ``sideband_shutting_down`` as during a proxy shutdown."""
        with self._lock:
            self._shutting_down = True

    def __call__(self, request: TransportRequest, /) -> TransportResponse:
        """Answer one request as the sideband would, and record it."""
        method = request.method.upper()
        parts = urlsplit(request.url)
        path = parts.path or "/"
        full_view = ("view", "full") in parse_qsl(parts.query)
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            body_json: Any = rules.NO_BODY
            try:
                self._guard(method, path, headers, request.body)
                if request.body:
                    body_json = rules.decode_json(request.body)
                status, answer = self._route(method, path, body_json, full_view=full_view)
            except Rejection as reject:
                status, answer = reject.status, reject.body
            recorded = None if body_json is rules.NO_BODY else body_json
            self._calls.append(RecordedCall(method, path, headers, recorded, status, answer))
        extra = {"allow": "POST" if path in _POST_ROUTES else "GET"} if status == 405 else {}
        return TransportResponse(
            status,
            {"content-type": "application/json", "cache-control": "no-store", **extra},
            json.dumps(answer).encode(),
        )

    @contextmanager
    def serve(self) -> Generator[str]:
        """Serve this fake on ``127.0.0.1`` on a free port and yield its base URL.

        The server runs in a daemon thread and stops when the block exits. Requests from other
        processes get exactly the answers in-process calls get, and are recorded the same way.
        """
        with serve_on_loopback(self) as base_url:
            yield base_url

    def _pick(self, token: str | None) -> str:
        # "" (not None) so that HELIO_SDK_TOKEN from the environment never leaks into a fake client.
        return self._token if token is None else token

    def _guard(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> None:
        if "origin" in headers:
            raise Rejection(403, CODE_ORIGIN_FORBIDDEN, "requests with an Origin header are refused")
        if method == "OPTIONS":
            raise Rejection(403, CODE_METHOD_FORBIDDEN, "OPTIONS requests are refused")
        if len(body) > MAX_BODY_BYTES:
            raise Rejection(413, CODE_BODY_TOO_LARGE, f"request body is over {MAX_BODY_BYTES} bytes")
        if (
            path != "/healthz"
            and self._token
            and not rules.bearer_matches(headers.get("authorization"), self._token)
        ):
            raise Rejection(401, CODE_UNAUTHORIZED, "missing or wrong bearer token")

    def _route(self, method: str, path: str, body: Any, *, full_view: bool) -> tuple[int, dict[str, Any]]:
        segments = path.split("/")
        if path == "/healthz":
            allowed = "GET"
        elif path in _POST_ROUTES:
            allowed = "POST"
        elif len(segments) == 4 and segments[1] == "session" and segments[2] and segments[3] == "state":
            allowed = "GET"
        else:
            raise Rejection(404, CODE_NOT_FOUND, f"no route {path}")
        if method != allowed:
            raise Rejection(405, CODE_METHOD_NOT_ALLOWED, f"{path} accepts {allowed} only")
        if allowed == "POST" and self._shutting_down:
            raise Rejection(503, CODE_SHUTTING_DOWN, "the sideband is shutting down")

        if path == "/healthz":
            return 200, {"status": "ok"}
        if path == "/evidence":
            return 201, self._post_evidence(rules.json_object(body))
        if path == "/context":
            fields = rules.json_object(body)
            session_id, key = rules.session_id(fields), rules.name(fields, "key")
            self._store.put_context(session_id, key, rules.present(fields, "value"))
            return 201, {"ok": True}
        if path == "/dependencies":
            fields = rules.json_object(body)
            session_id, tool_name = rules.session_id(fields), rules.name(fields, "tool_name")
            self._store.add_dependency(session_id, tool_name, rules.names(fields, "requires"))
            return 201, {"ok": True}
        return 200, self._store.snapshot(unquote(segments[2]), full_view=full_view)

    def _post_evidence(self, fields: dict[str, Any]) -> dict[str, Any]:
        session_id = rules.session_id(fields)
        tool_name = rules.name(fields, "tool_name")
        key = rules.name(fields, "evidence_key")
        data = rules.present(fields, "evidence_data")
        ttl = rules.ttl_seconds(fields.get("ttl_seconds", DEFAULT_TTL_SECONDS))
        call_id = None if fields.get("call_id") is None else rules.name(fields, "call_id")
        if self._allowed is not None and key not in self._allowed:
            preview = sorted(self._allowed)[:ALLOWED_KEYS_PREVIEW]
            raise Rejection(
                400,
                CODE_KEY_NOT_ALLOWED,
                f"evidence key {key!r} is not required by any policy rule",
                key=key,
                allowed_keys=preview,
                allowed_key_count=len(self._allowed),
                truncated=len(preview) < len(self._allowed),
            )
        entry = self._store.put_evidence(
            session_id, tool_name=tool_name, evidence_key=key, data=data, ttl_seconds=ttl, call_id=call_id
        )
        return {
            "ok": True,
            "evidence_key": key,
            "expires_at": entry["expires_at"],
            "verified": entry["verified"],
        }
