"""Legacy HTTP+SSE upstream (MCP 2024-11-05): ``upstream.transport: sse``.

Each downstream session gets its own SSE connection (:class:`LegacySseChannel`): ``GET url``,
then the server's ``endpoint`` event names where to POST this connection's messages (resolved
against the SSE URL; an endpoint on another origin is refused, as the MCP SDKs do). Messages the
client sends are POSTed there one by one; the server's ``message`` events are its messages.
:class:`~helio_proxy.transports.upstream.channel.MessageUpstream` turns that into the streamable
HTTP shape the gateway speaks, and reconnects a lost connection (replaying ``initialize``).

Failures, as for the streamable HTTP client: a refused connection is ``failure_reason:
connection_refused`` (never delivered); no ``endpoint`` event within ``upstream.connect_timeout``
is ``timeout``; a stream that ends or breaks answers every request in flight with ``-32603``
(``stream_ended`` / ``connection_lost``). Only ``upstream.headers`` are sent (the connection
belongs to a session, not to one client request).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from helio_proxy.config.upstream import UpstreamConfig
from helio_proxy.dataplane.credentials import CredentialProvider
from helio_proxy.errors import UpstreamError, UpstreamTooLarge, UpstreamUnavailable
from helio_proxy.transports.sse import SseEvent, iter_events
from helio_proxy.transports.upstream.channel import Channel, ChannelEvents, MessageUpstream
from helio_proxy.transports.upstream.streamable_http import DEFAULT_POOL_SIZE, request_errors
from helio_proxy.url_display import display_url, strip_credentials


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def resolve_endpoint(sse_url: str, data: str) -> str:
    """The POST URL an ``endpoint`` event names; ``ValueError`` when it is on another origin."""
    endpoint = urljoin(sse_url, data.strip())
    if _origin(endpoint) != _origin(sse_url):
        raise ValueError(f"endpoint {endpoint!r} is not on the SSE connection's origin")
    return endpoint


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in response.content.iter_any():
        yield chunk


class LegacySseChannel(Channel):
    """One SSE connection to the upstream, for one downstream session."""

    def __init__(self, events: ChannelEvents, upstream: LegacySseUpstream, **kwargs: Any) -> None:
        super().__init__(events, **kwargs)
        self.upstream = upstream
        self.endpoint: str | None = None
        """Where this connection's messages are POSTed (from the ``endpoint`` event)."""
        self._response: aiohttp.ClientResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def _connect(self) -> None:
        upstream = self.upstream
        http = upstream.http()
        events: AsyncGenerator[SseEvent, None] | None = None
        try:
            with request_errors(
                upstream.url,
                timeout=f"upstream {upstream.shown_url} sent no endpoint event within connect_timeout",
                failed=f"upstream {upstream.shown_url} SSE connection failed",
            ):
                async with asyncio.timeout(upstream.connect_timeout):
                    response = await http.get(
                        upstream.url,
                        headers={**await upstream.request_headers(), "accept": "text/event-stream"},
                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                        allow_redirects=False,
                    )
                    self._response = response
                    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                    if response.status != 200 or content_type != "text/event-stream":
                        raise UpstreamUnavailable(
                            f"upstream {upstream.shown_url} answered the SSE GET with HTTP {response.status} "
                            f"({content_type or 'no content type'})",
                            failure_reason="http_status",
                            upstream_http_status=response.status,
                        )
                    events = iter_events(_chunks(response), upstream.config.max_response_bytes)  # pyright: ignore[reportAssignmentType]
                    assert events is not None
                    self.endpoint = await self._endpoint(events)
        except UpstreamError:
            await _aclose(events)
            raise
        self._reader = asyncio.create_task(self._read(events), name=f"helio-sse-reader-{self.label}")

    async def _endpoint(self, events: AsyncGenerator[SseEvent, None]) -> str:
        async for event in events:
            if event.event == "endpoint":
                try:
                    return resolve_endpoint(self.upstream.url, event.data)
                except ValueError as exc:
                    raise UpstreamError(str(exc), failure_reason="endpoint_refused") from None
        raise UpstreamUnavailable(
            f"upstream {self.upstream.shown_url} closed the SSE stream before sending its endpoint",
            failure_reason="stream_ended",
        )

    async def _read(self, events: AsyncGenerator[SseEvent, None]) -> None:
        error: UpstreamError
        try:
            async for event in events:
                if event.is_message:
                    self.deliver(event.data.encode())
            error = UpstreamUnavailable(
                f"upstream {self.upstream.shown_url} closed the SSE stream", failure_reason="stream_ended"
            )
        except (aiohttp.ClientError, OSError) as exc:
            error = UpstreamUnavailable(
                f"upstream {self.upstream.shown_url} SSE stream broke: {strip_credentials(str(exc))}",
                failure_reason="connection_lost",
            )
        except ValueError:  # an oversized event: what waits on it fails, the connection is renewed
            error = UpstreamTooLarge(self.upstream.config.max_response_bytes, "message")
        finally:
            await _aclose(events)
        self.connection_lost(error)

    async def _write(self, data: bytes) -> None:
        upstream = self.upstream
        if self.endpoint is None:
            raise ConnectionResetError("not connected")
        with request_errors(
            self.endpoint,
            timeout=f"upstream {display_url(self.endpoint)} did not take the message in time",
            failed=f"upstream {display_url(self.endpoint)} request failed",
        ):
            async with upstream.http().post(
                self.endpoint,
                data=data,
                headers={**await upstream.request_headers(), "content-type": "application/json"},
                timeout=aiohttp.ClientTimeout(
                    total=upstream.request_timeout, connect=upstream.connect_timeout
                ),
                allow_redirects=False,
            ) as response:
                await response.read()
                status = response.status
        if status < 300:
            return
        error = UpstreamUnavailable(
            f"upstream refused a message with HTTP {status}",
            failure_reason="http_status",
            upstream_http_status=status,
        )
        if status == 404:
            # The server no longer knows this connection's session: reconnect (and re-initialize).
            self.connection_lost(error)
        raise error

    async def _disconnect(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        response, self._response = self._response, None
        if response is not None:
            response.close()
        self.endpoint = None


class LegacySseUpstream(MessageUpstream):
    """An upstream MCP server speaking legacy HTTP+SSE; one SSE connection per downstream session."""

    def __init__(
        self, config: UpstreamConfig, *, credentials: CredentialProvider | None = None, **kwargs: Any
    ) -> None:
        super().__init__(config, **kwargs)
        self.credentials = credentials
        """The proxy's own credential for this upstream (headers set on every request)."""
        self.shown_url = display_url(config.url)
        """What messages and logs show of the URL: scheme, host and port only."""
        self.static_headers = dict(config.headers)
        self._http: aiohttp.ClientSession | None = None

    async def request_headers(self) -> dict[str, str]:
        """``upstream.headers`` and the credential's headers."""
        if self.credentials is None:
            return self.static_headers
        return {**self.static_headers, **await self.credentials.headers()}

    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise UpstreamUnavailable("upstream client is not started", failure_reason="not_started")
        return self._http

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=DEFAULT_POOL_SIZE, limit_per_host=DEFAULT_POOL_SIZE)
        self._http = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        await super().start()

    async def close(self) -> None:
        await super().close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def open_channel(self, events: ChannelEvents) -> Channel:
        return LegacySseChannel(
            events,
            self,
            label=self.label,
            policy=self.policy,
            ready_timeout=self.connect_timeout,
            clock=self.clock,
            sleep=self.sleep,
        )


async def _aclose(events: AsyncGenerator[SseEvent, None] | None) -> None:
    if events is not None:
        with contextlib.suppress(RuntimeError, aiohttp.ClientError, OSError):
            await events.aclose()
