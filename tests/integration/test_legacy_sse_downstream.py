"""Agent-facing legacy HTTP+SSE (MCP 2024-11-05): ``GET /sse`` + ``POST /messages?sessionId=``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from helio_proxy.app import HelioApp
from helio_proxy.audit.query import AuditFilter, fetch
from helio_proxy.store import create_store
from helio_proxy.transports.downstream.sse import MAX_SSE_SESSIONS, STALE_AFTER_SECONDS, LegacySseEndpoint
from helio_proxy.transports.downstream.streamable_http import McpListenerApp
from tests.harness import build_test_upstream, mcp_upstream, proxy_config, run_proxy, serve_asgi

INIT: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2024-11-05",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class RawSse:
    """One legacy SSE session spoken by hand: the stream's events, and POSTs to its endpoint."""

    def __init__(self, http: httpx.AsyncClient, response: httpx.Response, url: str) -> None:
        self.http = http
        self.response = response
        self.url = url
        self._lines = response.aiter_lines()
        self.endpoint = ""

    async def event(self) -> tuple[str, str]:
        """The next event as (type, data)."""
        kind, data = "message", []
        async with asyncio.timeout(10):
            async for line in self._lines:
                if not line:
                    if data:
                        return kind, "\n".join(data)
                    continue
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
        raise EOFError("the stream ended")

    async def message(self) -> dict[str, Any]:
        kind, data = await self.event()
        assert kind == "message"
        return json.loads(data)

    async def post(self, message: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.http.post(self.endpoint, json=message, headers=headers)

    async def initialize(self) -> dict[str, Any]:
        assert (await self.post(INIT)).status_code == 202
        answer = await self.message()
        assert (await self.post(INITIALIZED)).status_code == 202
        return answer


@asynccontextmanager
async def raw_sse(http: httpx.AsyncClient, url: str, **headers: str) -> AsyncIterator[RawSse]:
    async with http.stream("GET", url, headers={"accept": "text/event-stream", **headers}) as response:
        assert response.status_code == 200, await response.aread()
        session = RawSse(http, response, url)
        kind, data = await session.event()
        assert kind == "endpoint"
        session.endpoint = urljoin(url, data)
        yield session


async def _script(transport: Any) -> dict[str, Any]:
    progress: list[float] = []
    logs: list[Any] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async def on_log(params: Any) -> None:
        logs.append(params.data)

    async with Client(transport, mode="legacy", logging_callback=on_log) as client:
        tools = await client.list_tools()
        weather = await client.call_tool("get_weather", {"city": "Paris"})
        report = await client.call_tool("build_report", {"steps": 3}, progress_callback=on_progress)
        failed = await client.call_tool("always_fails", {"reason": "nope"})
    return {
        "tools": sorted(t.name for t in tools.tools),
        "weather": weather.model_dump(by_alias=True, exclude={"meta"}),
        "report": report.model_dump(by_alias=True, exclude={"meta"}),
        "failed": failed.model_dump(by_alias=True, exclude={"meta"}),
        "progress": progress,
    }


async def test_official_sse_client_gets_through_the_proxy_what_it_gets_directly() -> None:
    async with mcp_upstream() as upstream_url:
        direct = await _script(upstream_url)
        async with run_proxy(proxy_config(upstream_url)) as proxy:
            proxied = await _script(sse_client(proxy.sse_url))
    assert proxied == direct
    assert proxied["failed"]["isError"] is True
    assert proxied["progress"] == [1, 2, 3]


async def test_two_sse_sessions_never_see_each_others_messages() -> None:
    async with (
        mcp_upstream() as upstream_url,
        run_proxy(proxy_config(upstream_url)) as proxy,
        httpx.AsyncClient(timeout=10) as http,
        raw_sse(http, proxy.sse_url) as one,
        raw_sse(http, proxy.sse_url) as two,
    ):
        assert one.endpoint != two.endpoint
        await one.initialize()
        await two.initialize()
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        report = {"name": "build_report", "arguments": {"steps": 2}, "_meta": {"progressToken": "one"}}
        assert (await one.post({**call, "params": report})).status_code == 202
        assert (
            await two.post({**call, "params": {"name": "get_weather", "arguments": {"city": "Rome"}}})
        ).status_code == 202
        seen_by_one = [await one.message() for _ in range(3)]
        seen_by_two = [await two.message()]
        await two.post({"jsonrpc": "2.0", "id": 2, "method": "ping"})
        seen_by_two.append(await two.message())
    assert [m.get("method") for m in seen_by_one] == ["notifications/progress"] * 2 + [None]
    assert {m["params"]["progressToken"] for m in seen_by_one[:2]} == {"one"}
    assert seen_by_one[2]["result"]["content"][0]["text"] == "report ready after 2 steps"
    # Two's stream carries two's answers only, in order: no progress, no report.
    assert seen_by_two[0]["result"]["content"][0]["text"].startswith("Rome:")
    assert seen_by_two[1] == {"jsonrpc": "2.0", "id": 2, "result": {}}


def _release_gated_upstream() -> tuple[Any, asyncio.Event]:
    """The test upstream plus a ``wait_for_release`` tool that answers once the event is set."""
    released = asyncio.Event()
    server = build_test_upstream()

    @server.tool()
    async def wait_for_release() -> str:
        """Answers only once the test releases it."""
        await released.wait()
        return "released"

    return server, released


async def test_a_slow_request_does_not_hold_up_a_later_one() -> None:
    server, released = _release_gated_upstream()
    async with (
        serve_asgi(server.streamable_http_app()) as upstream_base,
        run_proxy(proxy_config(f"{upstream_base}/mcp")) as proxy,
        httpx.AsyncClient(timeout=10) as http,
        raw_sse(http, proxy.sse_url) as sse,
    ):
        await sse.initialize()
        slow = {"name": "wait_for_release", "arguments": {}}
        await sse.post({"jsonrpc": "2.0", "id": "slow", "method": "tools/call", "params": slow})
        await sse.post({"jsonrpc": "2.0", "id": "fast", "method": "ping"})
        first = await sse.message()  # would time out if "slow" held up "fast"
        released.set()
        second = await sse.message()
    assert first == {"jsonrpc": "2.0", "id": "fast", "result": {}}
    assert second["id"] == "slow"
    assert second["result"]["content"][0]["text"] == "released"


async def test_post_errors_unknown_session_404_malformed_400_bad_type_415() -> None:
    async with (
        mcp_upstream() as upstream_url,
        run_proxy(proxy_config(upstream_url)) as proxy,
        httpx.AsyncClient(timeout=10) as http,
        raw_sse(http, proxy.sse_url) as sse,
    ):
        base = proxy.base_url
        missing = await http.post(f"{base}/messages", json=INIT)
        unknown = await http.post(f"{base}/messages?sessionId=nope", json=INIT)
        not_json = await http.post(sse.endpoint, content=b"{", headers={"content-type": "application/json"})
        not_rpc = await sse.post({"jsonrpc": "1.0", "id": 1, "method": "ping"})
        wrong_type = await http.post(sse.endpoint, content=b"{}", headers={"content-type": "text/plain"})
        got = await http.get(sse.endpoint)
        on_sse_path = await http.post(f"{base}/sse?sessionId={sse.endpoint.split('=')[1]}", json=INIT)
        answer = await sse.message()
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, -32600)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, -32600)
    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, -32700)
    assert (not_rpc.status_code, not_rpc.json()["error"]["code"], not_rpc.json()["id"]) == (400, -32600, 1)
    assert wrong_type.status_code == 415
    assert (got.status_code, got.headers["allow"]) == (405, "POST")
    # The reference posts to the SSE path itself; that works too.
    assert on_sse_path.status_code == 202
    assert answer["id"] == 0
    assert "protocolVersion" in answer["result"]


async def test_a_post_with_another_credential_than_the_stream_is_an_unknown_session() -> None:
    async with (
        mcp_upstream() as upstream_url,
        run_proxy(proxy_config(upstream_url)) as proxy,
        httpx.AsyncClient(timeout=10) as http,
        raw_sse(http, proxy.sse_url, authorization="Bearer alice") as sse,
    ):
        stolen = await sse.post(INIT, authorization="Bearer mallory")
        anonymous = await sse.post(INIT)
        owner = await sse.post(INIT, authorization="Bearer alice")
    assert (stolen.status_code, anonymous.status_code, owner.status_code) == (404, 404, 202)


async def test_host_and_origin_guards_apply_to_sse_and_messages() -> None:
    config = proxy_config("http://127.0.0.1:9/mcp").replace(
        "listen:\n  port: 0\n", "listen:\n  port: 0\n  allowed_origins: ['http://ok.test']\n"
    )
    async with run_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as http:
        rebound = await http.get(proxy.sse_url, headers={"host": "evil.test"})
        foreign = await http.get(proxy.sse_url, headers={"origin": "http://evil.test"})
        post = await http.post(
            f"{proxy.base_url}/messages?sessionId=x", json=INIT, headers={"origin": "http://evil.test"}
        )
        async with raw_sse(http, proxy.sse_url, origin="http://ok.test") as sse:
            assert sse.endpoint.startswith(proxy.base_url + "/messages?sessionId=")
    assert (rebound.status_code, foreign.status_code, post.status_code) == (403, 403, 403)


async def test_a_tool_call_over_sse_is_identified_by_the_minted_session_id(tmp_path: Path) -> None:
    """Reference: on ``/sse`` the minted stream id is the implicit last identity source (``transport``)."""
    db = tmp_path / "audit.db"
    async with (
        mcp_upstream() as upstream_url,
        run_proxy(proxy_config(upstream_url, audit_path=str(db))) as proxy,
        httpx.AsyncClient(timeout=10) as http,
        raw_sse(http, proxy.sse_url) as sse,
    ):
        await sse.initialize()
        call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
        await sse.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call})
        assert "result" in await sse.message()
        await sse.post(
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call},
            **{"x-helio-session-id": "run-9"},
        )
        assert "result" in await sse.message()
        minted = sse.endpoint.split("sessionId=")[1]
    store = create_store(f"sqlite:///{db}")
    store.open_sync()
    try:
        records = store.read_sync(lambda c: fetch(c, AuditFilter(), order="oldest"))
    finally:
        store.close_sync()
    calls = [(r["session_id"], r["session_source"]) for r in records if r["record_kind"] == "tool_call"]
    assert calls == [(minted, "transport"), ("run-9", "header")]


def _listener(proxy: HelioApp) -> McpListenerApp:
    assert proxy.mcp_app is not None
    return proxy.mcp_app


def _sse(proxy: HelioApp) -> LegacySseEndpoint:
    return _listener(proxy).sse[None]


async def _open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A bare SSE stream on a raw socket; the session id, or empty when refused."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    session_id = b""
    if b" 200 " in head.split(b"\r\n", 1)[0]:
        await reader.readuntil(b"sessionId=")
        session_id = (await reader.readuntil(b"\n")).strip()
    return reader, writer, session_id


async def test_the_1025th_concurrent_sse_session_is_refused_with_503() -> None:
    """Reference: at most 1024 concurrent SSE sessions; beyond that, 503."""
    assert MAX_SSE_SESSIONS == 1024
    async with run_proxy(proxy_config("http://127.0.0.1:9/mcp")) as proxy:
        port = urlparse(proxy.base_url).port
        assert port is not None
        opened = await asyncio.gather(*(_open_raw(port) for _ in range(MAX_SSE_SESSIONS)))
        try:
            assert all(session_id for _, _, session_id in opened)
            assert len(_sse(proxy).sessions) == MAX_SSE_SESSIONS
            async with httpx.AsyncClient(timeout=10) as http:
                refused = await http.get(proxy.sse_url)
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "5"
                assert refused.json()["error"]["data"] == {
                    "reason": "capacity_exhausted",
                    "limit": "max_sse_sessions",
                    "max": MAX_SSE_SESSIONS,
                }
                # Closing one stream frees its place.
                first = _sse(proxy).sessions[opened[0][2].decode()]
                opened[0][1].close()
                async with asyncio.timeout(10):
                    await first.ended.wait()
                async with raw_sse(http, proxy.sse_url) as sse:
                    assert "sessionId=" in sse.endpoint
        finally:
            for _, writer, _ in opened:
                writer.close()


async def test_a_stale_stream_is_swept_and_every_stream_ends_on_shutdown() -> None:
    now = [1000.0]
    async with (
        run_proxy(proxy_config("http://127.0.0.1:9/mcp")) as proxy,
        httpx.AsyncClient(timeout=10) as http,
    ):
        endpoint = _sse(proxy)
        endpoint.clock = lambda: now[0]
        async with raw_sse(http, proxy.sse_url) as stale:
            now[0] += STALE_AFTER_SECONDS / 2
            assert endpoint.sweep() == 0
            now[0] += STALE_AFTER_SECONDS
            assert endpoint.sweep() == 1
            with pytest.raises(EOFError):
                await stale.event()
        assert (await stale.post(INIT)).status_code == 404
        async with raw_sse(http, proxy.sse_url) as live:
            await _listener(proxy).close()
            with pytest.raises(EOFError):
                await live.event()
            assert endpoint.sessions == {}
            refused = await http.get(proxy.sse_url)
    assert refused.status_code == 503


async def test_a_request_id_already_in_flight_in_the_session_is_refused_not_forwarded(tmp_path: Path) -> None:
    """A second request reusing the id of one still in flight (the spec forbids it) would leave the
    upstream's first handler waiting forever (the official SDK keys its answers by id): it is refused
    with ``duplicate_request_id`` and recorded, and the first call is still answered."""
    server, released = _release_gated_upstream()
    audit_path = str(tmp_path / "audit.db")
    async with (
        serve_asgi(server.streamable_http_app()) as upstream_base,
        run_proxy(proxy_config(f"{upstream_base}/mcp", audit_path=audit_path)) as proxy,
        httpx.AsyncClient(timeout=10) as http,
        raw_sse(http, proxy.sse_url) as sse,
    ):
        await sse.initialize()
        slow = {"name": "wait_for_release", "arguments": {}}
        await sse.post({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": slow})
        again = {"name": "get_weather", "arguments": {"city": "Oslo"}}
        await sse.post({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": again})
        refused = await sse.message()
        released.set()
        answered = await sse.message()
        # Once the first is answered, the id is free again.
        await sse.post({"jsonrpc": "2.0", "id": 7, "method": "ping"})
        reused = await sse.message()
    assert refused["id"] == 7
    assert refused["error"]["code"] == -32600
    assert refused["error"]["data"]["reason"] == "duplicate_request_id"
    assert answered["id"] == 7
    assert answered["result"]["content"][0]["text"] == "released"
    assert reused == {"jsonrpc": "2.0", "id": 7, "result": {}}
    store = create_store(f"sqlite:///{audit_path}")
    store.open_sync()
    try:
        records = store.read_sync(lambda c: fetch(c, AuditFilter(), order="oldest"))
    finally:
        store.close_sync()
    records = [r for r in records if r["record_kind"] == "tool_call" and r["tool_name"] == "get_weather"]
    assert [(r["policy_decision"], r["block_reason"]) for r in records] == [
        ("rejected", "duplicate_request_id")
    ]
