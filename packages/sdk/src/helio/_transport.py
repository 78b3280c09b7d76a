"""The seam between the SDK and the network.

A transport is any callable that takes a ``TransportRequest`` and returns a ``TransportResponse``.
``UrllibTransport`` is the default; ``helio.testing.FakeSideband`` is another, answering in process,
so tests need no socket. Error statuses are returned as responses, not raised; a transport raises
only ``HelioConnectionError`` or ``HelioTimeoutError`` (plain ``OSError`` / ``TimeoutError`` are
mapped to those by the client too).
"""

import http.client
import ipaddress
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from helio._errors import HelioConnectionError, HelioError, HelioProtocolError, HelioTimeoutError


@dataclass(frozen=True)
class TransportRequest:
    """One HTTP request to the sideband. Header names are lower-case."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    body: bytes = b""
    timeout: float = 5.0


@dataclass(frozen=True)
class TransportResponse:
    """The sideband's answer, whatever its status. Header names are lower-case."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    body: bytes = b""


class Transport(Protocol):
    """Anything that sends a ``TransportRequest`` and returns the ``TransportResponse``."""

    def __call__(self, request: TransportRequest, /) -> TransportResponse: ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib copies request headers onto a redirect, which would hand the token to another host.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class UrllibTransport:
    """Sends requests with ``urllib.request``.

    Redirects are not followed. Loopback URLs never go through a proxy from ``HTTP_PROXY`` and
    friends; other hosts honour the usual proxy environment variables.
    """

    def __init__(self) -> None:
        self._direct = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)
        self._from_env = urllib.request.build_opener(_NoRedirects)

    def __call__(self, request: TransportRequest, /) -> TransportResponse:
        if urlsplit(request.url).scheme not in ("http", "https"):
            raise ValueError("UrllibTransport sends only http:// and https:// requests")
        opener = self._direct if _is_loopback(request.url) else self._from_env
        outgoing = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            request.url,
            data=request.body if request.body else None,
            headers=dict(request.headers),
            method=request.method,
        )
        where = f"{request.method} {_origin_of(request.url)}"
        try:
            with opener.open(outgoing, timeout=request.timeout) as answer:
                return _response(answer.status, answer.headers.items(), answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return _response(error.code, error.headers.items(), error.read())
        except urllib.error.URLError as error:
            raise _network_error(where, error.reason, request.timeout) from error
        except OSError as error:
            raise _network_error(where, error, request.timeout) from error
        except http.client.HTTPException as error:
            raise HelioProtocolError(f"{where}: the answer is not valid HTTP ({error!r})") from error

    def __repr__(self) -> str:
        return "UrllibTransport()"


def _response(status: int, headers: list[tuple[str, str]], body: bytes) -> TransportResponse:
    return TransportResponse(status=status, headers={k.lower(): v for k, v in headers}, body=body)


def _network_error(where: str, reason: object, timeout: float) -> HelioError:
    if isinstance(reason, TimeoutError):
        return HelioTimeoutError(f"{where}: no answer within {timeout}s")
    return HelioConnectionError(f"{where}: cannot reach the Helio sideband ({reason})")


def _origin_of(url: str) -> str:
    # Only scheme://host:port ever goes into a message: no userinfo, path or query.
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
