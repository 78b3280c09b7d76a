"""Streamable HTTP upstream client (one keep-alive HTTP/1.1 pool per upstream).

The HTTP edge of the message core: a request is POSTed, and its answer unframed here, JSON or
SSE, into :class:`~helio_proxy.gateway.exchange.UpstreamMessage` values (each SSE event's id
kept). Statuses the client must see (``401`` with ``WWW-Authenticate``, ``404`` session expired,
a JSON-RPC error with an HTTP status) become a
:class:`~helio_proxy.gateway.exchange.StatusAnswer`; anything else the upstream answers is a
failure (``UpstreamProtocolError`` with ``failure_reason: http_status``).

The client is :mod:`~helio_proxy.transports.upstream.http1` (asyncio protocols and httptools,
the llhttp parser), by measurement: a POST costs it about 30 µs of CPU against about 125 µs with
``aiohttp.ClientSession`` on uvloop (``benchmarks/bench_upstream_client.py``; aiohttp had replaced
``httpx.AsyncClient`` for the same reason), and the upstream client was the largest single item
of the proxy's per-call CPU. As with aiohttp before, redirects are not followed and no proxy is
taken from the environment; HTTP/2 is not spoken.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Generator, Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp

from helio_proxy.config.upstream import DEFAULT_MAX_RESPONSE_BYTES, UpstreamConfig
from helio_proxy.dataplane.credentials import CredentialProvider
from helio_proxy.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnavailable,
)
from helio_proxy.gateway.exchange import (
    RELAYED_REQUEST_HEADERS,
    RELAYED_RESPONSE_HEADERS,
    Answer,
    MessageStream,
    SingleAnswer,
    StatusAnswer,
    UpstreamMessage,
)
from helio_proxy.jsonrpc import Message, is_jsonrpc_error_payload, read_json
from helio_proxy.transports.sse import iter_events
from helio_proxy.transports.upstream.http1 import (
    DEFAULT_POOL_SIZE,
    Http1Pool,
    Response,
    UpstreamConnectionError,
)
from helio_proxy.url_display import display_url, strip_credentials

UPSTREAM_ACCEPT: Final = "application/json, text/event-stream"
"""The proxy can take either answer form, so it always offers both (a spec-compliant client does too)."""

PASSTHROUGH_STATUSES: Final = frozenset({401, 403, 404, 405, 406, 415})
"""Error statuses relayed to the client as they are even without a JSON-RPC body (session expiry,
auth challenges, "no GET stream" are the client's business); any other error status needs one."""


class _ReadErrors:
    """Turns client failures while reading an answer into the proxy's upstream errors."""

    __slots__ = ("_broken", "_timeout")

    def __init__(self, timeout: str, broken: str) -> None:
        self._timeout = timeout
        self._broken = broken

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, TimeoutError):
            raise UpstreamTimeout(self._timeout, failure_reason="timeout") from exc
        if isinstance(exc, (UpstreamConnectionError, aiohttp.ClientError)):
            raise UpstreamUnavailable(f"{self._broken}: {exc}", failure_reason="connection_lost") from exc


REQUEST_FAILURES: Final = (TimeoutError, aiohttp.ClientError, UpstreamConnectionError, OSError)
"""What sending a request can raise that :func:`request_error` turns into an upstream error."""


def request_error(exc: BaseException, url: str, *, timeout: str, failed: str) -> UpstreamError:
    """The proxy's upstream error for a client failure (ours or aiohttp's) sending to ``url``.

    A timeout becomes ``UpstreamTimeout(timeout)``; a refused connection ``connection_refused``
    (counted as undelivered); any other client error ``connection_lost`` with ``failed: <error>``.
    """
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(timeout, failure_reason="timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnavailable(
            f"cannot connect to upstream {display_url(url)}: {exc.os_error.strerror or strip_credentials(str(exc))}",
            failure_reason="connection_refused",
        )
    if isinstance(exc, aiohttp.ClientError | UpstreamConnectionError):  # ours: lost mid-answer, or not HTTP
        return UpstreamUnavailable(
            f"{failed}: {strip_credentials(str(exc))}", failure_reason="connection_lost"
        )
    assert isinstance(exc, OSError)  # from the connect: refused, unreachable, no such host
    return UpstreamUnavailable(
        f"cannot connect to upstream {display_url(url)}: {exc.strerror or strip_credentials(str(exc))}",
        failure_reason="connection_refused",
    )


@contextlib.contextmanager
def request_errors(url: str, *, timeout: str, failed: str) -> Generator[None]:
    """:func:`request_error` for whatever the block raises (:data:`REQUEST_FAILURES`)."""
    try:
        yield
    except REQUEST_FAILURES as exc:
        raise request_error(exc, url, timeout=timeout, failed=failed) from exc


@dataclass(slots=True)
class UpstreamResponse:
    """An upstream HTTP answer whose body has not necessarily been read yet.

    Reading stops, and the connection is closed, once the body passes ``max_bytes``
    (:class:`~helio_proxy.errors.UpstreamTooLarge`): an upstream answering gigabytes costs the
    proxy at most that much memory.
    """

    status: int
    content_type: str
    """Media type essence, lower-cased (``application/json``, ``text/event-stream``, ...)."""
    headers: dict[str, str]
    """The response headers the proxy relays to the client."""
    _response: Response
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    async def read(self) -> bytes:
        length = self._response.content_length
        if length is not None and length <= self.max_bytes:
            # The common case, read at once: the declared length bounds what is read.
            try:
                with _ReadErrors(
                    "upstream did not finish its answer in time", "upstream connection failed while reading"
                ):
                    return await self._response.read()
            finally:
                self._response.close()  # a no-op once read (read gives the connection back)
        body = bytearray()
        async for chunk in self.iter_chunks():
            body += chunk
        return bytes(body)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; closes the connection when the consumer stops early (a body read
        to its end gives the connection back to the pool)."""
        complete = False
        try:
            length = self._response.content_length
            if length is not None and length > self.max_bytes:
                raise UpstreamTooLarge(self.max_bytes)
            seen = 0
            with _ReadErrors(
                "upstream stream went quiet for longer than request_timeout", "upstream stream broke"
            ):
                async for chunk in self._response.iter_chunks():
                    seen += len(chunk)
                    if seen > self.max_bytes:
                        raise UpstreamTooLarge(self.max_bytes)
                    yield chunk
            complete = True
        finally:
            if complete:
                self._response.release()
            else:
                self._response.close()

    def close(self) -> None:
        self._response.close()


class StreamableHttpUpstream:
    """Sends client messages to one streamable-HTTP MCP endpoint."""

    def __init__(self, config: UpstreamConfig, *, credentials: CredentialProvider | None = None) -> None:
        self.config = config
        self.credentials = credentials
        """The proxy's own credential for this upstream (headers set on every request)."""
        self.url = config.url
        self.shown_url = display_url(config.url)
        """What messages and logs show of ``url``: scheme, host and port only."""
        relayed = (
            RELAYED_REQUEST_HEADERS
            if config.forward_authorization
            else RELAYED_REQUEST_HEADERS - {"authorization"}
        )
        self._forward = frozenset(config.forward_headers) | relayed
        self._static = dict(config.headers)
        self._pin = config.protocol_version
        self._connect_timeout = float(config.connect_timeout.seconds)
        self._request_timeout = float(config.request_timeout.seconds)
        self._max_bytes = config.max_response_bytes
        self._pool: Http1Pool | None = None

    async def start(self) -> None:
        self._pool = Http1Pool(self.url, size=DEFAULT_POOL_SIZE)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _headers(self, client_headers: Mapping[str, str], accept: str) -> dict[str, str]:
        headers = {name: value for name, value in client_headers.items() if name in self._forward}
        headers.update(self._static)
        if self._pin != "auto":
            # A pinned upstream is told its version even by clients that omit the header.
            headers.setdefault("mcp-protocol-version", self._pin)
        headers["accept"] = accept
        return headers

    async def _request(
        self, method: str, headers: dict[str, str], body: bytes | None, *, read_timeout: float | None
    ) -> UpstreamResponse:
        pool = self._pool
        if pool is None:
            raise UpstreamUnavailable("upstream client is not started", failure_reason="not_started")
        if self.credentials is not None:
            headers.update(await self.credentials.headers())
        if pool.basic_auth is not None and "authorization" not in headers:
            # Credentials in the URL are sent as Basic auth, as aiohttp did; a header set wins.
            headers["authorization"] = pool.basic_auth
        try:  # not request_errors(): a generator and two messages per call, for the rare failure
            response = await pool.request(
                method,
                pool.target,
                headers,
                body,
                connect_timeout=self._connect_timeout,
                read_timeout=read_timeout,
            )
        except REQUEST_FAILURES as exc:
            raise request_error(
                exc,
                self.url,
                timeout=f"upstream {self.shown_url} did not answer in time",
                failed=f"upstream {self.shown_url} request failed",
            ) from exc
        relayed: dict[str, str] = {}
        content_type = ""
        for name, value in response.headers:
            if name in RELAYED_RESPONSE_HEADERS:
                relayed[name] = value
            elif name == "content-type":
                content_type = value
        content_type = content_type.split(";", 1)[0].strip().lower()
        return UpstreamResponse(response.status, content_type, relayed, response, self._max_bytes)

    async def send(self, message: Message, client_headers: Mapping[str, str]) -> Answer:
        """POST one request; its answer as messages (JSON or SSE), or a status to pass on."""
        response = await self._post(message, client_headers)
        status = response.status
        detail = {"upstream_http_status": status, "upstream_content_type": response.content_type}
        if 200 <= status < 300 and status != 202:
            if response.content_type == "text/event-stream":
                return MessageStream(_events(response), response.headers, release=response.close)
            return SingleAnswer(
                lambda: _single(response), response.headers, detail=detail, release=response.close
            )
        if status >= 400:
            body = await response.read()
            payload = read_json(body)
            if is_jsonrpc_error_payload(payload) or status in PASSTHROUGH_STATUSES:
                return StatusAnswer(status, body, response.headers, payload)
        else:
            response.close()
        reason = "accepted without answering" if status == 202 else f"answered HTTP {status}"
        raise UpstreamProtocolError(
            f"upstream {reason}",
            failure_class="upstream_forward_error" if status >= 300 else "upstream_invalid_jsonrpc",
            failure_reason="http_status",
            **detail,
        )

    async def notify(self, message: Message, client_headers: Mapping[str, str]) -> StatusAnswer:
        """POST a notification or a client's response (``2xx``: the upstream took it)."""
        response = await self._post(message, client_headers)
        body = await response.read()
        return StatusAnswer(response.status, body, response.headers, read_json(body) if body else None)

    async def _post(self, message: Message, client_headers: Mapping[str, str]) -> UpstreamResponse:
        headers = self._headers(client_headers, UPSTREAM_ACCEPT)
        headers["content-type"] = "application/json"
        return await self._request("POST", headers, message.raw, read_timeout=self._request_timeout)

    async def listen(self, client_headers: Mapping[str, str]) -> MessageStream | StatusAnswer:
        """GET the server-to-client stream (no read timeout: it may be idle for long)."""
        response = await self._request(
            "GET", self._headers(client_headers, "text/event-stream"), None, read_timeout=None
        )
        if response.status == 200 and response.content_type == "text/event-stream":
            return MessageStream(_events(response), response.headers, release=response.close)
        body = await response.read()
        return StatusAnswer(response.status, body, response.headers, read_json(body) if body else None)

    async def end_session(self, client_headers: Mapping[str, str]) -> StatusAnswer:
        """DELETE the session."""
        response = await self._request(
            "DELETE", self._headers(client_headers, UPSTREAM_ACCEPT), None, read_timeout=self._request_timeout
        )
        body = await response.read()
        return StatusAnswer(response.status, body, response.headers, read_json(body) if body else None)


async def _single(response: UpstreamResponse) -> UpstreamMessage:
    """A JSON answer: one message, the whole body."""
    return UpstreamMessage(await response.read())


async def _events(response: UpstreamResponse) -> AsyncIterator[UpstreamMessage]:
    """An SSE answer: one message per ``message`` event; an event with only an id or a ``retry``
    (a server making its stream resumable) is passed on as those alone; other events are not
    messages."""
    try:
        async for event in iter_events(response.iter_chunks()):
            if event.is_message:
                yield UpstreamMessage(event.data.encode(), event.id, retry=event.retry)
            elif (event.id is not None or event.retry is not None) and not event.data:
                yield UpstreamMessage(b"", event.id, retry=event.retry)
    except ValueError as exc:  # an event over MAX_EVENT_BYTES
        raise UpstreamProtocolError(str(exc)) from None


__all__ = ["StreamableHttpUpstream", "UpstreamError", "UpstreamResponse"]
