"""The annotation primer, against a fake upstream at the transport seam and an injected sleep."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from helio_proxy.errors import UpstreamUnavailable
from helio_proxy.gateway.priming import (
    BACKOFF_MAX_SECONDS,
    AnnotationPrimer,
    PrimeError,
    UpstreamToolLister,
    backoff_delay,
)
from helio_proxy.policy import BaselineCache

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
    """A tools/list server: optional session requirement, pages of 2, JSON or SSE answers."""

    require_session: bool = False
    sse: bool = False
    page_size: int = 2
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(
        default_factory=list[tuple[dict[str, str], dict[str, Any]]]
    )

    async def post(self, client_headers: Mapping[str, str], body: bytes) -> FakeAnswer:
        message = json.loads(body)
        headers = dict(client_headers)
        self.requests.append((headers, message))
        method = message["method"]
        if method == "initialize":
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
    cursors = [(m.get("params") or {}).get("cursor") for _, m in upstream.requests]
    assert cursors == [None, "2", "4"]
    assert all(h["mcp-protocol-version"] == "2025-06-18" for h, _ in upstream.requests)


async def test_the_lister_does_its_own_handshake_when_the_upstream_requires_a_session() -> None:
    upstream = FakeUpstream(require_session=True, sse=True)
    lister = UpstreamToolLister(upstream)
    tools = await lister.list_tools()
    assert len(tools) == len(TOOLS)
    methods = [m["method"] for _, m in upstream.requests]
    assert methods[:4] == ["tools/list", "initialize", "notifications/initialized", "tools/list"]
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
