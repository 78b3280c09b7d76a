"""Learning tool definitions from the upstream before agents call: the annotation primer.

At startup the proxy sends its own ``tools/list`` (following ``nextCursor``) so rules match real
annotations from the first call. It waits a bounded time at boot, then keeps retrying in the
background with exponential backoff and jitter; until it succeeds, unknown tools take the MCP
defaults (destructive), which fails closed. Once primed it re-lists every
``policies.tool_revalidation.interval`` to catch drift.

The primer keeps its own upstream session: if the upstream answers "missing session" (HTTP
400/404), it performs the ``initialize`` handshake, keeps the ``Mcp-Session-Id`` and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, cast

from helio_proxy import __version__
from helio_proxy.config.durations import seconds
from helio_proxy.errors import UpstreamError
from helio_proxy.jsonrpc import dumps, is_response_for
from helio_proxy.policy import BaselineCache
from helio_proxy.policy.baselines import DriftEvent
from helio_proxy.transports.sse import SseEvent, iter_events

BOOT_WAIT_SECONDS: Final = 1.5
"""How long startup waits for the first ``tools/list`` before continuing without it."""

BACKOFF_BASE_SECONDS: Final = 1.0
BACKOFF_MAX_SECONDS: Final = 30.0
MAX_PAGES: Final = 100
"""``tools/list`` pages followed before giving up on a cursor chain (guards against a loop)."""

PRIMER_PROTOCOL_VERSION: Final = "2025-06-18"
"""Protocol revision the primer offers in ``initialize`` and sends as ``MCP-Protocol-Version``."""


class PrimeError(Exception):
    """The upstream could not be listed (it answered, but not with a usable tool list)."""


class UpstreamAnswer(Protocol):
    status: int
    content_type: str
    headers: dict[str, str]

    async def read(self) -> bytes: ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...


class UpstreamPoster(Protocol):
    """The part of :class:`~helio_proxy.transports.upstream.streamable_http.StreamableHttpUpstream` used here."""

    async def post(self, client_headers: Mapping[str, str], body: bytes) -> Any: ...


class ToolSource(Protocol):
    async def list_tools(self) -> list[Any]: ...


class UpstreamToolLister:
    """Lists the upstream's tools over its own MCP session."""

    def __init__(self, upstream: UpstreamPoster) -> None:
        self.upstream = upstream
        self.session_id: str | None = None
        self.protocol_version = PRIMER_PROTOCOL_VERSION
        self._ids = itertools.count(1)

    async def list_tools(self) -> list[Any]:
        """Every tool definition, across pages."""
        tools: list[Any] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            result = await self._request("tools/list", {"cursor": cursor} if cursor else None)
            page = result.get("tools")
            if not isinstance(page, list):
                raise PrimeError("tools/list result has no 'tools' array")
            tools.extend(cast(list[Any], page))
            next_cursor = result.get("nextCursor")
            if not isinstance(next_cursor, str) or not next_cursor:
                return tools
            cursor = next_cursor
        raise PrimeError(f"tools/list still paginating after {MAX_PAGES} pages")

    def _headers(self) -> dict[str, str]:
        headers = {"mcp-protocol-version": self.protocol_version}
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
        return headers

    async def _request(
        self, method: str, params: dict[str, Any] | None, *, handshake_allowed: bool = True
    ) -> dict[str, Any]:
        request_id = f"helio-primer-{next(self._ids)}"
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        answer: UpstreamAnswer = await self.upstream.post(self._headers(), dumps(message))
        if answer.status in (400, 404) and handshake_allowed:
            body = await answer.read()
            if b"session" in body.lower():
                await self._handshake()
                return await self._request(method, params, handshake_allowed=False)
            raise PrimeError(f"upstream answered {method} with HTTP {answer.status}")
        payload = await _response_payload(answer, request_id)
        error = payload.get("error")
        if error is not None:
            raise PrimeError(f"upstream answered {method} with an error: {json.dumps(error)[:200]}")
        result = payload.get("result")
        if not isinstance(result, dict):
            raise PrimeError(f"upstream answered {method} without a result object")
        return cast(dict[str, Any], result)

    async def _handshake(self) -> None:
        self.session_id = None
        self.protocol_version = PRIMER_PROTOCOL_VERSION
        request_id = f"helio-primer-{next(self._ids)}"
        initialize = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {
                "protocolVersion": PRIMER_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "helio-proxy-primer", "version": __version__},
            },
        }
        answer: UpstreamAnswer = await self.upstream.post({}, dumps(initialize))
        session_id = answer.headers.get("mcp-session-id")
        payload = await _response_payload(answer, request_id)
        result = payload.get("result")
        if not isinstance(result, dict):
            raise PrimeError("upstream refused the primer's initialize")
        version = cast(dict[str, Any], result).get("protocolVersion")
        self.session_id = session_id
        if isinstance(version, str):
            self.protocol_version = version
        notified: UpstreamAnswer = await self.upstream.post(
            self._headers(), dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        await notified.read()


async def _response_payload(answer: UpstreamAnswer, request_id: str) -> dict[str, Any]:
    """The JSON-RPC response to ``request_id`` from a JSON or SSE answer."""
    if not 200 <= answer.status < 300:
        await answer.read()
        raise PrimeError(f"upstream answered HTTP {answer.status}")
    if answer.content_type == "text/event-stream":
        events: AsyncGenerator[SseEvent, None] = iter_events(answer.iter_chunks())  # pyright: ignore[reportAssignmentType]
        async with contextlib.aclosing(events):
            async for event in events:
                if event.is_message and is_response_for(payload := event.json(), request_id):
                    return cast(dict[str, Any], payload)
        raise PrimeError("upstream closed the stream without answering")
    body = await answer.read()
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PrimeError("upstream answer is not JSON") from None
    if not is_response_for(payload, request_id):
        raise PrimeError("upstream answer is not a response to the request")
    return cast(dict[str, Any], payload)


def backoff_delay(attempt: int, *, rand: Callable[[], float] = random.random) -> float:
    """Delay before retry ``attempt`` (0-based): exponential from 1 s, capped at 30 s, with jitter.

    "Equal jitter": half the exponential step, plus a random part of the other half.
    """
    step = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * (2**attempt))
    return step / 2 + rand() * step / 2


class AnnotationPrimer:
    """Keeps :class:`BaselineCache` filled from the upstream's ``tools/list``."""

    def __init__(
        self,
        source: ToolSource,
        baselines: BaselineCache,
        *,
        on_drift: Callable[[list[DriftEvent]], None] = lambda _events: None,
        on_primed: Callable[[int], None] = lambda _count: None,
        revalidate_every: Callable[[], float | None] = lambda: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.source = source
        self.baselines = baselines
        self.on_drift = on_drift
        self.on_primed = on_primed
        self.revalidate_every = revalidate_every
        """Seconds between re-lists once primed (read each time: it hot-reloads); ``None`` disables."""
        self._sleep = sleep
        self._rand = rand
        self.attempts = 0
        self.last_error: str | None = None

    async def prime_once(self) -> int:
        """List the tools once; return how many tool definitions were seen."""
        self.attempts += 1
        try:
            tools = await self.source.list_tools()
        except (PrimeError, UpstreamError) as exc:
            self.last_error = str(exc)
            raise
        self.on_drift(self.baselines.observe(tools))
        first = not self.baselines.primed
        self.baselines.primed = True
        if first:
            self.on_primed(len(tools))
        return len(tools)

    async def prime_at_boot(self, wait: float = BOOT_WAIT_SECONDS) -> int | None:
        """One attempt, bounded by ``wait`` seconds; ``None`` when it did not succeed in time."""
        try:
            async with asyncio.timeout(wait):
                return await self.prime_once()
        except TimeoutError:
            self.last_error = f"no answer within {wait:g}s"
            return None
        except (PrimeError, UpstreamError):
            return None

    async def run(self) -> None:
        """Retry until primed (backoff), then re-list periodically. Runs until cancelled."""
        failures = 0
        while not self.baselines.primed:
            await self._sleep(backoff_delay(failures, rand=self._rand))
            try:
                await self.prime_once()
            except (PrimeError, UpstreamError):
                failures += 1
        while True:
            interval = self.revalidate_every()
            if interval is None:
                return
            await self._sleep(interval)
            with contextlib.suppress(PrimeError, UpstreamError):
                await self.prime_once()


def revalidation_interval(enabled: bool, interval: str) -> float | None:
    return float(seconds(interval)) if enabled else None
