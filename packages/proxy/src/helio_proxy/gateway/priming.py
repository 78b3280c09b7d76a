"""Learning tool definitions from the upstream before agents call: the annotation primer.

At startup the proxy sends its own ``tools/list`` (following ``nextCursor``) so rules match real
annotations from the first call. It waits a bounded time at boot, then keeps retrying in the
background with exponential backoff and jitter; until it succeeds, unknown tools take the MCP
defaults (destructive), which fails closed. Once primed it re-lists every
``policies.tool_revalidation.interval`` to catch drift.

The primer speaks the upstream's protocol era (see :class:`UpstreamToolLister`). With a legacy
upstream it keeps its own session: if the upstream answers "missing session" (HTTP 400/404), it
performs the ``initialize`` handshake, keeps the ``Mcp-Session-Id`` and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, cast

from helio_proxy import __version__
from helio_proxy.config.durations import seconds
from helio_proxy.errors import UpstreamError
from helio_proxy.gateway.eras import (
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
    MODERN_PROTOCOL,
    Era,
    era_of_version,
)
from helio_proxy.gateway.exchange import Answer, SingleAnswer, StatusAnswer
from helio_proxy.jsonrpc import HEADER_MISMATCH, Kind, Message, dumps, is_response_for
from helio_proxy.policy import BaselineCache
from helio_proxy.policy.baselines import DriftEvent

BOOT_WAIT_SECONDS: Final = 1.5
"""How long startup waits for the first ``tools/list`` before continuing without it."""

BACKOFF_BASE_SECONDS: Final = 1.0
BACKOFF_MAX_SECONDS: Final = 30.0
MAX_PAGES: Final = 100
"""``tools/list`` pages followed before giving up on a cursor chain (guards against a loop)."""

PRIMER_PROTOCOL_VERSION: Final = "2025-06-18"
"""Protocol revision the primer offers in ``initialize`` to an unpinned legacy upstream."""

REPROBE_SECONDS: Final = 30.0
"""After a ``server/discover`` probe that got no answer, how long before the next one."""

UNSUPPORTED_PROTOCOL_VERSION: Final = -32022
MODERN_ERROR_CODES: Final = frozenset({HEADER_MISMATCH, -32021, UNSUPPORTED_PROTOCOL_VERSION})
"""JSON-RPC codes only a 2026-07-28 server answers with (header mismatch, missing client
capability, unsupported protocol version): positive evidence of the modern era."""


class PrimeError(Exception):
    """The upstream could not be listed (it answered, but not with a usable tool list)."""


class UpstreamPoster(Protocol):
    """The part of :class:`~helio_proxy.gateway.exchange.Upstream` used here."""

    async def send(self, message: Message, client_headers: Mapping[str, str]) -> Answer: ...

    async def notify(self, message: Message, client_headers: Mapping[str, str]) -> StatusAnswer: ...


class ToolSource(Protocol):
    async def list_tools(self) -> list[Any]: ...


class UpstreamToolLister:
    """Lists the upstream's tools in the upstream's own protocol era.

    With ``upstream.protocol_version: auto`` the first listing probes ``server/discover`` (MCP
    2026-07-28): a discover result naming 2026-07-28, or a modern protocol error, means *modern*
    (stateless: every request carries the ``_meta`` envelope and the mirror headers); anything else
    means *legacy* (``initialize`` handshake when the upstream asks for a session). The conclusion
    is kept for the process. A probe that fails (no connection) concludes nothing: that listing
    presumes legacy, and the next probe waits :data:`REPROBE_SECONDS`. A legacy conclusion is
    dropped when the upstream answers ``initialize`` with a modern error; a modern one is kept.
    A pinned version skips the probe and speaks that version.
    """

    def __init__(
        self,
        upstream: UpstreamPoster,
        *,
        pin: str = "auto",
        clock: Callable[[], float] = time.monotonic,
        request_timeout: float | None = None,
    ) -> None:
        self.upstream = upstream
        self.request_timeout = request_timeout
        """Each of the lister's requests must be answered within this (an upstream that streams
        forever fails the listing instead of hanging it); ``None``: the transport's timeouts only."""
        self.pin = pin
        self.era: Era | None = None if pin == "auto" else era_of_version(pin)
        """The upstream's era: fixed by a pin, else learned by the probe."""
        self.session_id: str | None = None
        self.legacy_version = pin if self.era == "legacy" else PRIMER_PROTOCOL_VERSION
        """What the primer offers in ``initialize``."""
        self.protocol_version = pin if self.era == "modern" else self.legacy_version
        """What the primer sends as ``MCP-Protocol-Version`` (the negotiated version once initialized)."""
        self.probes = 0
        self._probed_at: float | None = None
        self._clock = clock
        self._ids = itertools.count(1)

    async def list_tools(self) -> list[Any]:
        """Every tool definition, across pages."""
        if self.era is None:
            await self._probe()
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

    @property
    def _modern(self) -> bool:
        return self.era == "modern"

    def _envelope(self) -> dict[str, Any]:
        return {
            META_PROTOCOL_VERSION: self.protocol_version,
            META_CLIENT_CAPABILITIES: {},
            META_CLIENT_INFO: {"name": "helio-proxy-primer", "version": __version__},
        }

    def _headers(self, method: str) -> dict[str, str]:
        headers = {"mcp-protocol-version": self.protocol_version}
        if self._modern:
            headers["mcp-method"] = method
        elif self.session_id:
            headers["mcp-session-id"] = self.session_id
        return headers

    async def _probe(self) -> None:
        """Learn the upstream's era with ``server/discover`` (at most once per :data:`REPROBE_SECONDS`)."""
        now = self._clock()
        if self._probed_at is not None and now - self._probed_at < REPROBE_SECONDS:
            return
        self._probed_at = now
        self.probes += 1
        request_id = f"helio-primer-{next(self._ids)}"
        envelope = {**self._envelope(), META_PROTOCOL_VERSION: MODERN_PROTOCOL}
        message = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "server/discover",
            "params": {"_meta": envelope},
        }
        headers = {"mcp-protocol-version": MODERN_PROTOCOL, "mcp-method": "server/discover"}
        try:
            answer = await self.upstream.send(_request(message), headers)
            payload = await _any_payload(answer, request_id)
        except UpstreamError:
            return  # inconclusive: presume legacy for now
        self.era = _era_from_discover(payload)
        self.protocol_version = MODERN_PROTOCOL if self.era == "modern" else self.legacy_version

    async def _request(
        self, method: str, params: dict[str, Any] | None, *, handshake_allowed: bool = True
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.request_timeout):
                return await self._request_once(method, params, handshake_allowed=handshake_allowed)
        except TimeoutError:
            raise PrimeError(f"upstream did not answer {method} within request_timeout") from None

    async def _request_once(
        self, method: str, params: dict[str, Any] | None, *, handshake_allowed: bool = True
    ) -> dict[str, Any]:
        request_id = f"helio-primer-{next(self._ids)}"
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if self._modern:
            message["params"] = {**(params or {}), "_meta": self._envelope()}
        elif params is not None:
            message["params"] = params
        answer = await self.upstream.send(_request(message), self._headers(method))
        if (
            isinstance(answer, StatusAnswer)
            and answer.status in (400, 404)
            and handshake_allowed
            and not self._modern
        ):
            if b"session" in answer.body.lower():
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
        self.protocol_version = self.legacy_version
        request_id = f"helio-primer-{next(self._ids)}"
        initialize = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {
                "protocolVersion": self.legacy_version,
                "capabilities": {},
                "clientInfo": {"name": "helio-proxy-primer", "version": __version__},
            },
        }
        answer = await self.upstream.send(_request(initialize), {})
        session_id = answer.headers.get("mcp-session-id")
        payload = await _any_payload(answer, request_id)
        if payload is not None and _error_code(payload) in MODERN_ERROR_CODES and self.pin == "auto":
            self.era = None  # the legacy conclusion was wrong: probe again
            self._probed_at = None
            raise PrimeError("upstream answered initialize with a modern protocol error")
        result = (
            payload.get("result") if payload is not None and not isinstance(answer, StatusAnswer) else None
        )
        if not isinstance(result, dict):
            raise PrimeError("upstream refused the primer's initialize")
        version = cast(dict[str, Any], result).get("protocolVersion")
        self.session_id = session_id
        if isinstance(version, str):
            self.protocol_version = version
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await self.upstream.notify(
            Message(Kind.NOTIFICATION, initialized, dumps(initialized)),
            self._headers("notifications/initialized"),
        )


def _error_code(payload: dict[str, Any]) -> object:
    error = payload.get("error")
    return cast(dict[str, Any], error).get("code") if isinstance(error, dict) else None


def _era_from_discover(payload: dict[str, Any] | None) -> Era:
    """What a ``server/discover`` answer says about the upstream's era."""
    if payload is None:
        return "legacy"
    code = _error_code(payload)
    if code == UNSUPPORTED_PROTOCOL_VERSION:
        data = cast(dict[str, Any], payload["error"]).get("data")
        supported = cast(dict[str, Any], data).get("supported") if isinstance(data, dict) else None
        if (
            isinstance(supported, list)
            and supported
            and all(isinstance(v, str) and era_of_version(v) == "modern" for v in cast(list[Any], supported))
        ):
            raise PrimeError(f"upstream speaks only MCP {', '.join(cast(list[str], supported))}")
        return "legacy"
    if code in MODERN_ERROR_CODES:
        return "modern"
    result = payload.get("result")
    versions = cast(dict[str, Any], result).get("supportedVersions") if isinstance(result, dict) else None
    if isinstance(versions, list) and MODERN_PROTOCOL in versions:
        return "modern"
    return "legacy"


def _request(payload: dict[str, Any]) -> Message:
    return Message(Kind.REQUEST, payload, dumps(payload))


async def _any_payload(answer: Answer, request_id: str) -> dict[str, Any] | None:
    """The JSON-RPC answer to ``request_id`` whatever the HTTP status; ``None`` if there is none.

    An error without an ``id`` counts (servers leave it out when they reject before parsing it).
    """
    if not isinstance(answer, StatusAnswer):
        try:
            return await _response_payload(answer, request_id)
        except PrimeError:
            return None
    payload: Any = answer.payload
    if not isinstance(payload, dict):
        return None
    message = cast(dict[str, Any], payload)
    if is_response_for(message, request_id) or (
        isinstance(message.get("error"), dict) and message.get("id") is None
    ):
        return message
    return None


async def _response_payload(answer: Answer, request_id: str) -> dict[str, Any]:
    """The JSON-RPC response to ``request_id`` among the answer's messages."""
    if isinstance(answer, StatusAnswer):
        raise PrimeError(f"upstream answered HTTP {answer.status}")
    if isinstance(answer, SingleAnswer):
        message = await answer.read()
        if not message.answers(request_id):
            if message.payload is None:
                raise PrimeError("upstream answer is not JSON")
            raise PrimeError("upstream answer is not a response to the request")
        payload: dict[str, Any] = message.payload
        return payload
    messages = aiter(answer)
    async with contextlib.aclosing(messages):  # pyright: ignore[reportArgumentType]
        async for message in messages:
            if message.answers(request_id):
                found: dict[str, Any] = message.payload
                return found
    raise PrimeError("upstream closed the stream without answering")


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
