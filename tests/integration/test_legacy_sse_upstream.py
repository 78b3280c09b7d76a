"""A legacy HTTP+SSE upstream (``upstream.transport: sse``) behind the proxy.

The real upstream is the everything server's ``sse_app()`` (official SDK) served in-process; a
small scripted SSE server stands in where a failure has to be staged (a stream that ends, an
endpoint on another origin, a server that never names its endpoint).
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from mcp.client.sse import sse_client

from examples.everything.server import build_server
from helio_proxy.app import HelioApp
from helio_proxy.config import LoadedConfig, parse_config_text
from helio_proxy.transports.downstream.asgi import read_body
from helio_proxy.transports.upstream.legacy_sse import LegacySseUpstream, resolve_endpoint
from tests.harness import proxy_config, run_proxy, serve_asgi
from tests.peers.script import run_script, script_client

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2024-11-05",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def sse_proxy_config(url: str, extra: str = "", *, connect_timeout: str = "10s") -> str:
    return proxy_config(url, extra).replace(
        "  request_timeout: 5s\n",
        f"  request_timeout: 5s\n  transport: sse\n  connect_timeout: {connect_timeout}\n",
    )


def _call(request_id: int, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments or {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def _payload(response: httpx.Response) -> dict[str, Any]:
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
        return events[-1]
    return response.json()


async def _open_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    answer = await http.post(url, json=INIT, headers=HEADERS)
    assert answer.status_code == 200, answer.text
    headers = {**HEADERS, "mcp-session-id": answer.headers["mcp-session-id"]}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await http.post(url, json=initialized, headers=headers)).status_code == 202
    return headers


async def test_official_client_through_the_proxy_to_a_legacy_sse_server_matches_direct() -> None:
    async with serve_asgi(build_server().sse_app()) as base:
        direct = await run_script(script_client(sse_client(f"{base}/sse")))
        async with run_proxy(sse_proxy_config(f"{base}/sse")) as app:
            assert app.baselines.primed  # the primer listed the tools over its own SSE connection
            proxied = await run_script(script_client(app.mcp_url))
    assert proxied == direct
    assert proxied["fail"]["isError"] is True
    assert [p[0] for p in proxied["progress"]] == [1, 2, 3]
    assert proxied["elicit"]["content"][0]["text"] == "accepted: Ada (subscribe=True)"
    assert proxied["sample"]["content"][0]["text"].startswith("model said: a haiku about proxies")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_upstream_is_a_32603_with_connection_refused() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/sse"
    async with run_proxy(sse_proxy_config(url)) as app, httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(app.mcp_url, json=INIT, headers=HEADERS)
    assert answer.status_code == 200
    error = answer.json()["error"]
    assert error["code"] == -32603
    assert error["data"]["failure_class"] == "upstream_forward_error"
    assert error["data"]["failure_reason"] == "connection_refused"
    assert answer.json()["id"] == 0


class ScriptedSseServer:
    """A legacy SSE server by hand: ``initialize`` and ``echo`` are answered on the stream,
    ``end_stream`` closes the stream without answering, ``hang`` is never answered."""

    def __init__(self, endpoint: str = "/messages", *, send_endpoint: bool = True) -> None:
        self.endpoint = endpoint
        self.send_endpoint = send_endpoint
        self.streams: dict[str, asyncio.Queue[bytes | None]] = {}
        self.connections = 0
        self.received: list[dict[str, Any]] = []

    def end_all(self) -> None:
        """End every open stream (so the server can stop without waiting for them)."""
        for queue in self.streams.values():
            queue.put_nowait(None)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            await self._stream(send)
        else:
            await self._post(scope, receive, send)

    async def _stream(self, send: Any) -> None:
        self.connections += 1
        session_id = str(self.connections)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.streams[session_id] = queue
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if self.send_endpoint:
            event = f"event: endpoint\ndata: {self.endpoint}?session_id={session_id}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": True})
        while (item := await queue.get()) is not None:
            await send({"type": "http.response.body", "body": item, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _post(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        query = parse_qs(scope["query_string"].decode())
        queue = self.streams.get(query.get("session_id", [""])[0])
        message = json.loads(await read_body(receive, 1 << 20))
        self.received.append(message)
        status = 202 if queue is not None else 404
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        if queue is None or "id" not in message:
            return
        method = message.get("method")
        name = (message.get("params") or {}).get("name")
        if method == "tools/call" and name == "end_stream":
            queue.put_nowait(None)
            return
        if method == "tools/call" and name == "hang":
            return
        result: dict[str, Any] = {"echo": message.get("params")}
        if method == "initialize":
            result = {
                "protocolVersion": "2024-11-05",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "s"},
            }
        answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        queue.put_nowait(f"event: message\ndata: {json.dumps(answer)}\n\n".encode())


@asynccontextmanager
async def scripted(server: ScriptedSseServer) -> AsyncIterator[str]:
    async with serve_asgi(server, lifespan="off") as base:
        try:
            yield f"{base}/sse"
        finally:
            server.end_all()


async def test_a_stream_that_ends_answers_the_request_in_flight_and_the_next_one_reconnects() -> None:
    server = ScriptedSseServer()
    async with (
        scripted(server) as url,
        run_proxy(sse_proxy_config(url)) as app,
        httpx.AsyncClient(timeout=15) as http,
    ):
        session = await _open_session(http, app.mcp_url)
        ended = _payload(await http.post(app.mcp_url, json=_call(1, "end_stream"), headers=session))
        # The channel reconnects (after the restart policy's first delay) and replays initialize.
        again = _payload(await http.post(app.mcp_url, json=_call(2, "echo", {"x": 1}), headers=session))
    assert ended["id"] == 1
    assert ended["error"]["code"] == -32603
    assert ended["error"]["data"]["failure_class"] == "upstream_forward_error"
    assert ended["error"]["data"]["failure_reason"] == "stream_ended"
    assert again["result"]["echo"]["arguments"] == {"x": 1}
    replayed = [m.get("method") for m in server.received]
    assert replayed.count("initialize") >= 3  # the primer's, the client's, and the replay


async def test_each_client_session_gets_its_own_sse_connection() -> None:
    server = ScriptedSseServer()
    async with (
        scripted(server) as url,
        run_proxy(sse_proxy_config(url)) as app,
        httpx.AsyncClient(timeout=10) as http,
    ):
        before = server.connections
        one = await _open_session(http, app.mcp_url)
        two = await _open_session(http, app.mcp_url)
        assert one["mcp-session-id"] != two["mcp-session-id"]
        assert server.connections == before + 2
        answers = [
            _payload(await http.post(app.mcp_url, json=_call(7, "echo", {"who": who}), headers=headers))
            for who, headers in (("one", one), ("two", two))
        ]
        deleted = await http.delete(app.mcp_url, headers=one)
        gone = await http.post(app.mcp_url, json=_call(8, "echo"), headers=one)
    assert [a["result"]["echo"]["arguments"]["who"] for a in answers] == ["one", "two"]
    assert deleted.status_code == 200
    assert gone.status_code == 404


async def test_an_endpoint_on_another_origin_is_refused() -> None:
    server = ScriptedSseServer(endpoint="http://evil.example/messages")
    async with (
        scripted(server) as url,
        run_proxy(sse_proxy_config(url)) as app,
        httpx.AsyncClient(timeout=10) as http,
    ):
        answer = await http.post(app.mcp_url, json=INIT, headers=HEADERS)
    assert answer.json()["error"]["data"]["failure_reason"] == "endpoint_refused"
    assert server.received == []  # nothing was ever posted to the foreign endpoint


async def test_no_endpoint_event_within_connect_timeout_is_a_timeout() -> None:
    server = ScriptedSseServer(send_endpoint=False)
    async with (
        scripted(server) as url,
        run_proxy(sse_proxy_config(url, connect_timeout="1s")) as app,
        httpx.AsyncClient(timeout=10) as http,
    ):
        answer = await http.post(app.mcp_url, json=INIT, headers=HEADERS)
    error = answer.json()["error"]
    assert (error["code"], error["data"]["failure_reason"]) == (-32603, "timeout")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("/messages/?session_id=1", "http://127.0.0.1:8/messages/?session_id=1"),
        ("messages?x=1", "http://127.0.0.1:8/a/messages?x=1"),
        ("http://127.0.0.1:8/m", "http://127.0.0.1:8/m"),
    ],
)
def test_endpoints_resolve_against_the_sse_url(data: str, expected: str) -> None:
    assert resolve_endpoint("http://127.0.0.1:8/a/sse", data) == expected


@pytest.mark.parametrize("data", ["http://127.0.0.1:9/m", "https://127.0.0.1:8/m", "//evil.example/m"])
def test_an_endpoint_on_another_scheme_host_or_port_is_rejected(data: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        resolve_endpoint("http://127.0.0.1:8/a/sse", data)


def test_the_proxy_builds_a_legacy_sse_client_for_transport_sse() -> None:
    config = parse_config_text(sse_proxy_config("http://127.0.0.1:8/sse"), env={})
    app = HelioApp(LoadedConfig(config=config, path=Path("t.yaml"), sha256="0" * 64), out=io.StringIO())
    assert isinstance(app.upstream, LegacySseUpstream)
    assert app.upstream.connect_timeout == 10.0
