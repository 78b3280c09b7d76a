"""The annotation primer, against a fake upstream at the transport seam and an injected sleep."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from helio_proxy.errors import UpstreamUnavailable
from helio_proxy.gateway.exchange import Answer, MessageStream, SingleAnswer, StatusAnswer, UpstreamMessage
from helio_proxy.gateway.priming import (
    BACKOFF_MAX_SECONDS,
    AnnotationPrimer,
    PrimeError,
    UpstreamToolLister,
    backoff_delay,
)
from helio_proxy.jsonrpc import Message
from helio_proxy.policy import BaselineCache
from helio_proxy.transports.sse import iter_events

TOOLS = [
    {"name": f"tool_{n}", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": n % 2 == 0}}
    for n in range(5)
]


@dataclass
class FakeAnswer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict[str, str])

    async def read(self) -> bytes:
        return self.body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        # Split mid-event to exercise the incremental SSE parser.
        yield self.body[:7]
        yield self.body[7:]


@dataclass
class FakeUpstream:
    """A tools/list server: optional session requirement, pages of 2, JSON or SSE answers.

    ``era="legacy"`` answers ``server/discover`` as an unknown method; ``"modern"`` answers it and
    requires the ``_meta`` envelope and mirror headers on every request (2026-07-28).
    """

    require_session: bool = False
    sse: bool = False
    page_size: int = 2
    era: str = "legacy"
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(
        default_factory=list[tuple[dict[str, str], dict[str, Any]]]
    )

    async def send(self, message: Message, client_headers: Mapping[str, str]) -> Answer:
        """The HTTP answer of :meth:`post` as the streamable-HTTP edge hands it to the core."""
        answer = await self.post(client_headers, message.raw)
        if 200 <= answer.status < 300:
            if answer.content_type == "text/event-stream":
                events = iter_events(answer.iter_chunks())
                messages = (UpstreamMessage(event.data.encode(), event.id) async for event in events)
                return MessageStream(messages, answer.headers)
            return SingleAnswer.of(UpstreamMessage(answer.body), answer.headers)
        return StatusAnswer(answer.status, answer.body, answer.headers, json.loads(answer.body))

    async def notify(self, message: Message, client_headers: Mapping[str, str]) -> StatusAnswer:
        answer = await self.post(client_headers, message.raw)
        return StatusAnswer(answer.status, answer.body, answer.headers)

    async def post(self, client_headers: Mapping[str, str], body: bytes) -> FakeAnswer:
        message = json.loads(body)
        headers = dict(client_headers)
        self.requests.append((headers, message))
        method = message["method"]
        if self.era == "modern":
            meta = (message.get("params") or {}).get("_meta") or {}
            version = meta.get("io.modelcontextprotocol/protocolVersion")
            if version != "2026-07-28" or headers.get("mcp-method") != method:
                return self._error(message, -32020, "header mismatch", status=400)
            if headers.get("mcp-protocol-version") != version or "mcp-session-id" in headers:
                return self._error(message, -32020, "header mismatch", status=400)
            if method == "server/discover":
                return self._answer(message, {"supportedVersions": ["2026-07-28"], "capabilities": {}})
        elif method == "server/discover":
            return self._error(message, -32601, "Method not found")
        if method == "initialize":
            if self.era == "modern":
                return self._error(message, -32022, "Unsupported", data={"supported": ["2026-07-28"]})
            return self._answer(message, {"protocolVersion": "2025-06-18", "capabilities": {}}, session="s-1")
        if method == "notifications/initialized":
            return FakeAnswer(202, b"")
        if self.require_session and headers.get("mcp-session-id") != "s-1":
            error = {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": -32600, "message": "Bad Request: Missing session ID"},
            }
            return FakeAnswer(400, json.dumps(error).encode())
        start = int((message.get("params") or {}).get("cursor") or 0)
        result: dict[str, Any] = {"tools": TOOLS[start : start + self.page_size]}
        if start + self.page_size < len(TOOLS):
            result["nextCursor"] = str(start + self.page_size)
        return self._answer(message, result)

    @staticmethod
    def _error(
        message: dict[str, Any], code: int, text: str, *, status: int = 200, data: Any = None
    ) -> FakeAnswer:
        error: dict[str, Any] = {"code": code, "message": text, **({"data": data} if data else {})}
        return FakeAnswer(
            status, json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": error}).encode()
        )

    def _answer(
        self, message: dict[str, Any], result: dict[str, Any], session: str | None = None
    ) -> FakeAnswer:
        payload = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}).encode()
        headers = {"mcp-session-id": session} if session else {}
        if self.sse:
            notice = (
                b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n'
            )
            return FakeAnswer(
                200, notice + b"event: message\ndata: " + payload + b"\n\n", "text/event-stream", headers
            )
        return FakeAnswer(200, payload, headers=headers)


@pytest.mark.parametrize("sse", [False, True])
async def test_the_lister_follows_next_cursor_across_pages(sse: bool) -> None:
    upstream = FakeUpstream(sse=sse)
    tools = await UpstreamToolLister(upstream).list_tools()
    assert [t["name"] for t in tools] == [t["name"] for t in TOOLS]
    lists = [(h, m) for h, m in upstream.requests if m["method"] == "tools/list"]
    assert [(m.get("params") or {}).get("cursor") for _, m in lists] == [None, "2", "4"]
    assert all(h["mcp-protocol-version"] == "2025-06-18" for h, _ in lists)


async def test_the_lister_does_its_own_handshake_when_the_upstream_requires_a_session() -> None:
    upstream = FakeUpstream(require_session=True, sse=True)
    lister = UpstreamToolLister(upstream)
    tools = await lister.list_tools()
    assert len(tools) == len(TOOLS)
    methods = [m["method"] for _, m in upstream.requests]
    assert methods[:5] == [
        "server/discover",
        "tools/list",
        "initialize",
        "notifications/initialized",
        "tools/list",
    ]
    assert lister.session_id == "s-1"
    assert upstream.requests[-1][0]["mcp-session-id"] == "s-1"


async def test_an_upstream_error_answer_is_a_prime_error() -> None:
    class Failing(FakeUpstream):
        async def post(self, client_headers: Mapping[str, str], body: bytes) -> FakeAnswer:
            message = json.loads(body)
            error = {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "no tools"}}
            return FakeAnswer(200, json.dumps(error).encode())

    with pytest.raises(PrimeError):
        await UpstreamToolLister(Failing()).list_tools()


def test_backoff_grows_exponentially_from_one_second_caps_at_thirty_and_jitters() -> None:
    assert [backoff_delay(n, rand=lambda: 1.0) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert [backoff_delay(n, rand=lambda: 0.0) for n in range(3)] == [0.5, 1, 2]
    assert backoff_delay(50, rand=lambda: 0.999) <= BACKOFF_MAX_SECONDS


class FlakySource:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def list_tools(self) -> list[Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise UpstreamUnavailable("connection refused")
        return TOOLS


async def test_the_primer_retries_with_backoff_until_it_primes_then_reports_once() -> None:
    slept: list[float] = []
    primed: list[int] = []
    baselines = BaselineCache()

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    source = FlakySource(failures=6)
    primer = AnnotationPrimer(source, baselines, on_primed=primed.append, sleep=fake_sleep, rand=lambda: 1.0)
    assert await primer.prime_at_boot() is None
    assert not baselines.primed
    assert not baselines.facts("tool_0").known
    async with asyncio.timeout(5):
        await primer.run()
    assert slept == [1, 2, 4, 8, 16, 30]
    assert primed == [5]
    assert baselines.primed
    assert baselines.facts("tool_0").hints.readOnlyHint is True


async def test_the_boot_attempt_is_bounded_in_time() -> None:
    class Hanging:
        async def list_tools(self) -> list[Any]:
            await asyncio.Event().wait()
            return []

    primer = AnnotationPrimer(Hanging(), BaselineCache())
    async with asyncio.timeout(5):
        assert await primer.prime_at_boot(wait=0.01) is None
    assert primer.last_error is not None


async def test_once_primed_the_primer_relists_every_interval_and_reports_drift() -> None:
    baselines = BaselineCache()
    drift: list[Any] = []
    intervals = iter([300.0, 300.0, None])
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            TOOLS[0]["description"] = "changed"

    source = FlakySource(failures=0)
    primer = AnnotationPrimer(
        source,
        baselines,
        on_drift=drift.extend,
        revalidate_every=lambda: next(intervals),
        sleep=fake_sleep,
    )
    try:
        assert await primer.prime_at_boot() == 5
        async with asyncio.timeout(5):
            await primer.run()
    finally:
        TOOLS[0].pop("description", None)
    assert slept == [300.0, 300.0]
    assert source.calls == 3
    assert [(e.kind, e.tool, e.aspects) for e in drift] == [("tool_drift", "tool_0", ("description",))]


# -- protocol eras ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_modern_upstream_is_listed_statelessly_with_the_envelope_and_mirror_headers() -> None:
    """MCP 2026-07-28: no initialize, no session; _meta envelope plus MCP-Protocol-Version/Mcp-Method."""
    upstream = FakeUpstream(era="modern", sse=True)
    lister = UpstreamToolLister(upstream)
    assert len(await lister.list_tools()) == len(TOOLS)
    assert len(await lister.list_tools()) == len(TOOLS)
    methods = [m["method"] for _, m in upstream.requests]
    assert methods == ["server/discover", *["tools/list"] * 6]  # probed once, cached
    assert lister.era == "modern"
    assert lister.probes == 1
    headers, last = upstream.requests[-1]
    assert headers == {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    assert last["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert last["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] == {}


async def test_a_legacy_upstream_is_probed_once_then_listed_over_its_own_session() -> None:
    upstream = FakeUpstream(era="legacy", require_session=True)
    lister = UpstreamToolLister(upstream)
    await lister.list_tools()
    await lister.list_tools()
    methods = [m["method"] for _, m in upstream.requests]
    assert methods.count("server/discover") == 1
    assert methods.count("initialize") == 1
    assert lister.era == "legacy"
    assert all("mcp-method" not in h for h, m in upstream.requests if m["method"] == "tools/list")


async def test_a_probe_without_an_answer_concludes_nothing_and_is_retried_only_after_thirty_seconds() -> None:
    class Unreachable(FakeUpstream):
        refusals: int = 2

        async def post(self, client_headers: Mapping[str, str], body: bytes) -> FakeAnswer:
            if json.loads(body)["method"] == "server/discover" and self.refusals > 0:
                self.refusals -= 1
                self.requests.append((dict(client_headers), json.loads(body)))
                raise UpstreamUnavailable("connection refused", failure_reason="connection_refused")
            return await super().post(client_headers, body)

    clock = Clock()
    upstream = Unreachable(era="modern")
    lister = UpstreamToolLister(upstream, clock=clock)
    with pytest.raises(PrimeError):  # presumed legacy: the modern upstream rejects the bare tools/list
        await lister.list_tools()
    assert lister.era is None
    clock.now += 29
    with pytest.raises(PrimeError):
        await lister.list_tools()
    assert lister.probes == 1  # throttled
    clock.now += 2
    with pytest.raises(PrimeError):
        await lister.list_tools()
    assert lister.probes == 2
    clock.now += 31
    assert len(await lister.list_tools()) == len(TOOLS)
    assert lister.era == "modern"
    assert lister.probes == 3


@pytest.mark.parametrize("pin", ["2025-06-18", "2025-11-25"])
async def test_a_legacy_pin_skips_the_probe_and_offers_the_pinned_version(pin: str) -> None:
    upstream = FakeUpstream(era="legacy", require_session=True)
    lister = UpstreamToolLister(upstream, pin=pin)
    await lister.list_tools()
    methods = [m["method"] for _, m in upstream.requests]
    assert "server/discover" not in methods
    initialize = next(m for _, m in upstream.requests if m["method"] == "initialize")
    assert initialize["params"]["protocolVersion"] == pin
    assert upstream.requests[0][0]["mcp-protocol-version"] == pin


async def test_a_modern_pin_skips_the_probe() -> None:
    upstream = FakeUpstream(era="modern")
    lister = UpstreamToolLister(upstream, pin="2026-07-28")
    assert len(await lister.list_tools()) == len(TOOLS)
    assert [m["method"] for _, m in upstream.requests] == ["tools/list"] * 3


async def test_an_upstream_speaking_only_unknown_modern_versions_is_a_prime_error() -> None:
    class Future(FakeUpstream):
        async def post(self, client_headers: Mapping[str, str], body: bytes) -> FakeAnswer:
            message = json.loads(body)
            return self._error(message, -32022, "Unsupported", status=400, data={"supported": ["2027-01-01"]})

    with pytest.raises(PrimeError, match="2027-01-01"):
        await UpstreamToolLister(Future()).list_tools()


async def test_a_legacy_conclusion_contradicted_by_initialize_is_dropped_and_probed_again() -> None:
    class Contradicting(FakeUpstream):
        """Answers the first discover like a legacy server, then turns out to be modern."""

        discovered: int = 0

        async def post(self, client_headers: Mapping[str, str], body: bytes) -> FakeAnswer:
            message = json.loads(body)
            if message["method"] == "server/discover" and self.discovered == 0:
                self.discovered += 1
                return self._error(message, -32601, "Method not found")
            if message["method"] == "tools/list" and "_meta" not in (message.get("params") or {}):
                self.requests.append((dict(client_headers), message))
                return self._error(message, -32600, "Bad Request: Missing session ID", status=400)
            return await super().post(client_headers, body)

    upstream = Contradicting(era="modern")
    lister = UpstreamToolLister(upstream)
    with pytest.raises(PrimeError, match="modern"):
        await lister.list_tools()
    assert lister.era is None
    assert len(await lister.list_tools()) == len(TOOLS)
    assert lister.era == "modern"
