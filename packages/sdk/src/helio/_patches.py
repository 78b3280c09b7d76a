"""What ``helio.instrument()`` wraps in each HTTP library: one seam per library that every request
(and every redirect hop) passes through, so the session header is decided per hop, by URL.

* httpx and httpx2 (what the official ``mcp`` 2.x client sends with): ``Client`` and
  ``AsyncClient._send_single_request``, which sends exactly one hop. The header is added for the
  hop and taken off again once it is sent, so a redirect built from the request afterwards never
  carries it to another host.
* aiohttp: ``ClientRequest.send``; aiohttp builds a new ``ClientRequest`` for each hop.
* requests: ``Session.send``, which requests calls again for each redirect hop with a copy of the
  previous request's headers; a value this module added is recognisable (its own ``str`` type)
  and is removed on a hop to another host, or replaced when the request object is sent again.

Each wrapper asks ``session_for(url)`` which session id, if any, the hop should carry. A header
the caller set itself is left alone.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from helio._wire import SESSION_HEADER

SessionFor = Callable[[str], str | None]
"""The session id a request to this URL must carry now, or ``None``."""


@dataclass(frozen=True)
class Seam:
    """One attribute to wrap: ``owner.name`` becomes ``wrap(original)``."""

    owner: type
    name: str
    wrap: Callable[[Any], Any]


class _Injected(str):
    """A header value this module added (requests copies header values as they are)."""

    __slots__ = ()


def _httpx_seams(module: ModuleType, session_for: SessionFor) -> list[Seam]:
    def add(request: Any) -> bool:
        if SESSION_HEADER in request.headers:
            return False
        session_id = session_for(str(request.url))
        if session_id is None:
            return False
        request.headers[SESSION_HEADER] = session_id
        return True

    def remove(request: Any) -> None:
        if SESSION_HEADER in request.headers:
            del request.headers[SESSION_HEADER]

    def wrap_sync(original: Any) -> Any:
        @functools.wraps(original)
        def _send_single_request(self: Any, request: Any) -> Any:
            added = add(request)
            try:
                return original(self, request)
            finally:
                if added:
                    remove(request)

        return _send_single_request

    def wrap_async(original: Any) -> Any:
        @functools.wraps(original)
        async def _send_single_request(self: Any, request: Any) -> Any:
            added = add(request)
            try:
                return await original(self, request)
            finally:
                if added:
                    remove(request)

        return _send_single_request

    return [
        Seam(module.Client, "_send_single_request", wrap_sync),
        Seam(module.AsyncClient, "_send_single_request", wrap_async),
    ]


def _aiohttp_seams(module: ModuleType, session_for: SessionFor) -> list[Seam]:
    def wrap(original: Any) -> Any:
        @functools.wraps(original)
        async def send(self: Any, conn: Any) -> Any:
            if SESSION_HEADER not in self.headers:
                session_id = session_for(str(self.url))
                if session_id is not None:
                    self.headers[SESSION_HEADER] = session_id
            return await original(self, conn)

        return send

    return [Seam(module.ClientRequest, "send", wrap)]


def _requests_seams(module: ModuleType, session_for: SessionFor) -> list[Seam]:
    def wrap(original: Any) -> Any:
        @functools.wraps(original)
        def send(self: Any, request: Any, **kwargs: Any) -> Any:
            headers = request.headers
            present = headers.get(SESSION_HEADER)
            if present is None or isinstance(present, _Injected):
                session_id = session_for(str(request.url))
                if session_id is not None:
                    headers[SESSION_HEADER] = _Injected(session_id)
                elif present is not None:
                    del headers[SESSION_HEADER]
            return original(self, request, **kwargs)

        return send

    return [Seam(module.Session, "send", wrap)]


SEAMS: dict[str, Callable[[ModuleType, SessionFor], list[Seam]]] = {
    "aiohttp": _aiohttp_seams,
    "httpx": _httpx_seams,
    "httpx2": _httpx_seams,
    "requests": _requests_seams,
}
"""The libraries ``helio.instrument()`` knows, by top-level module name."""
