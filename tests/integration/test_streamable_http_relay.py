"""The proxy is transparent for streamable HTTP: the official SDK client sees the same thing
through it as directly, for upstreams answering JSON and answering SSE streams."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from mcp import Client

from helio_proxy.evidence.gates import CALL_ID_META_KEY
from tests.harness import mcp_upstream, proxy_config, run_proxy

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
ACCEPT_BOTH = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


async def _script(url: str, mode: str) -> dict[str, Any]:
    """One client session: list tools, call tools, collect progress."""
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with Client(url, mode=mode) as client:
        tools = await client.list_tools()
        weather = await client.call_tool("get_weather", {"city": "Paris"})
        report = await client.call_tool("build_report", {"steps": 3}, progress_callback=on_progress)
        failed = await client.call_tool("always_fails", {"reason": "nope"})
    return {
        "tools": sorted(
            (t.name, json.dumps(t.annotations.model_dump(by_alias=True) if t.annotations else None))
            for t in tools.tools
        ),
        "weather": weather.model_dump(by_alias=True, exclude={"meta"}),
        "report": report.model_dump(by_alias=True, exclude={"meta"}),
        "failed_is_error": failed.is_error,
        "progress": progress,
    }


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "sse"])
@pytest.mark.parametrize("stateless", [True, False], ids=["stateless", "stateful"])
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_official_client_gets_identical_results_through_the_proxy(
    json_response: bool, stateless: bool, mode: str
) -> None:
    async with mcp_upstream(json_response=json_response, stateless=stateless) as upstream_url:
        direct = await _script(upstream_url, mode)
        async with run_proxy(proxy_config(upstream_url)) as proxy:
            proxied = await _script(proxy.mcp_url, mode)
    assert proxied == direct
    assert proxied["failed_is_error"] is True
    if not json_response:
        assert [p[0] for p in proxied["progress"]] == [1, 2, 3]


async def _sse_events(response: httpx.Response) -> list[Any]:
    events: list[Any] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            events.append(json.loads(line[5:].strip()))
    return events


async def test_sse_answer_is_relayed_as_sse_with_notifications_before_the_response_in_order() -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "build_report", "arguments": {"steps": 3}, "_meta": {"progressToken": "tok"}},
    }
    async with mcp_upstream(stateless=True) as upstream_url, run_proxy(proxy_config(upstream_url)) as proxy:
        async with httpx.AsyncClient(timeout=10) as http:
            async with http.stream("POST", proxy.mcp_url, json=call, headers=ACCEPT_BOTH) as proxied:
                assert proxied.status_code == 200
                assert proxied.headers["content-type"].startswith("text/event-stream")
                via_proxy = await _sse_events(proxied)
            async with http.stream("POST", upstream_url, json=call, headers=ACCEPT_BOTH) as direct_response:
                direct = await _sse_events(direct_response)
    # The proxy adds exactly one thing: its call id in the result's _meta (docs/evidence.md).
    call_id = via_proxy[-1]["result"].pop("_meta")
    assert list(call_id) == [CALL_ID_META_KEY]
    assert len(call_id[CALL_ID_META_KEY]) == 32
    assert via_proxy == direct
    assert [e.get("method") for e in via_proxy] == ["notifications/progress"] * 3 + [None]
    assert [e["params"]["progress"] for e in via_proxy[:3]] == [1, 2, 3]
    assert via_proxy[-1]["id"] == 7
    assert via_proxy[-1]["result"]["isError"] is False


async def test_client_that_accepts_only_json_gets_the_response_event_as_json() -> None:
    call = {
        "jsonrpc": "2.0",
        "id": "a",
        "method": "tools/call",
        "params": {"name": "get_weather", "arguments": {"city": "Oslo"}},
    }
    async with mcp_upstream(stateless=True) as upstream_url, run_proxy(proxy_config(upstream_url)) as proxy:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(proxy.mcp_url, json=call)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["id"] == "a"
    assert response.json()["result"]["content"][0]["text"] == "Oslo: 18°C, light rain"


async def test_session_header_and_protocol_version_are_relayed_and_notifications_get_202() -> None:
    async with (
        mcp_upstream(json_response=True) as upstream_url,
        run_proxy(proxy_config(upstream_url)) as proxy,
        httpx.AsyncClient(timeout=10) as http,
    ):
        init = await http.post(proxy.mcp_url, json=INIT, headers=ACCEPT_BOTH)
        session_id = init.headers["mcp-session-id"]
        assert init.json()["result"]["protocolVersion"] == "2025-06-18"
        headers = {**ACCEPT_BOTH, "mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"}
        notified = await http.post(
            proxy.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
        )
        listed = await http.post(
            proxy.mcp_url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers
        )
        without_session = await http.post(
            proxy.mcp_url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=ACCEPT_BOTH
        )
    assert notified.status_code == 202
    assert notified.content == b""
    assert listed.status_code == 200
    assert "get_weather" in {t["name"] for t in listed.json()["result"]["tools"]}
    # The upstream's own rejection of a session-less request is relayed with its status.
    assert without_session.status_code == 400
    assert without_session.json()["error"]["code"] == -32600


async def test_get_stream_and_delete_pass_through_to_a_stateful_upstream() -> None:
    async with mcp_upstream() as upstream_url, run_proxy(proxy_config(upstream_url)) as proxy:
        async with httpx.AsyncClient(timeout=10) as http:
            init = await http.post(proxy.mcp_url, json=INIT, headers=ACCEPT_BOTH)
            session = {"mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
            async with http.stream(
                "GET", proxy.mcp_url, headers={"accept": "text/event-stream", **session}
            ) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
            deleted = await http.delete(proxy.mcp_url, headers=session)
            after = await http.post(
                proxy.mcp_url,
                json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"},
                headers={**ACCEPT_BOTH, **session},
            )
    assert deleted.status_code == 200
    assert after.status_code == 404  # the session is gone upstream; the client must re-initialize


async def test_get_stream_on_a_stateless_upstream_is_relayed_as_an_open_event_stream() -> None:
    async with mcp_upstream(stateless=True) as upstream_url, run_proxy(proxy_config(upstream_url)) as proxy:
        async with httpx.AsyncClient(timeout=10) as http:
            async with http.stream("GET", proxy.mcp_url, headers={"accept": "text/event-stream"}) as stream:
                status, content_type = stream.status_code, stream.headers["content-type"]
    assert status == 200
    assert content_type.startswith("text/event-stream")
