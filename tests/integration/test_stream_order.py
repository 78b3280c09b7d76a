"""The proxy keeps a client's order: a GET stream that reached it first is open upstream before
the same session's next POST is sent (servers may send a request's elicitation on that stream)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.harness import proxy_config, run_proxy, serve_asgi

SESSION = "s-1"


class SlowStreamUpstream:
    """A streamable HTTP upstream whose GET stream takes a while to open; it logs what happened when."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":
            await asyncio.sleep(0.3)  # the stream opens late (a cold connection, a busy server)
            self.log.append("stream open")
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
            await self.release.wait()
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body) if body else {}
        self.log.append(f"post {request.get('method')}")
        if "id" not in request:
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        answer = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})


async def test_a_post_after_a_get_reaches_the_upstream_after_the_stream_opened() -> None:
    upstream = SlowStreamUpstream()
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-session-id": SESSION,
        "mcp-protocol-version": "2025-06-18",
    }
    async with (
        serve_asgi(upstream) as base,
        run_proxy(proxy_config(f"{base}/mcp")) as app,
        httpx.AsyncClient(timeout=10) as http,
    ):
        opening = asyncio.create_task(
            http.send(http.build_request("GET", app.mcp_url, headers=headers), stream=True)
        )
        async with asyncio.timeout(5):
            while SESSION not in app.gateway._streams_opening:  # noqa: ASYNC110 - the GET has reached the proxy
                await asyncio.sleep(0.005)
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        answered = await http.post(app.mcp_url, json=ping, headers=headers)
        stream = await opening
        assert stream.status_code == 200
        upstream.release.set()
        await stream.aclose()
    assert answered.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert upstream.log.index("stream open") < upstream.log.index("post ping")
