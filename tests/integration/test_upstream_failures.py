"""Upstream failures never reach the agent as transport errors: a JSON-RPC request always gets
HTTP 200 with JSON-RPC -32603 and ``data.failure_class`` (reference behaviour), and valid
upstream HTTP errors are relayed as they are."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from helio_proxy.server import bind
from helio_proxy.transports.downstream.asgi import read_body, send_bytes
from tests.harness import audit_records, proxy_config, run_proxy, serve_asgi

Handler = Callable[[dict[str, Any]], Awaitable[tuple[int, str, bytes]]]
CALL = {
    "jsonrpc": "2.0",
    "id": 5,
    "method": "tools/call",
    "params": {"name": "get_weather", "arguments": {"city": "x"}},
}
HEADERS = {"accept": "application/json, text/event-stream"}


def fake_upstream(handler: Handler) -> Any:
    """A raw ASGI upstream answering every request with ``handler(parsed_body)``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive, 1 << 20)
        status, content_type, payload = await handler(
            json.loads(body) if body else {"method": scope["method"]}
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


async def _call_through(
    handler: Handler, message: dict[str, Any] = CALL, request_timeout: str = "5s"
) -> httpx.Response:
    async with serve_asgi(fake_upstream(handler), lifespan="off") as base:
        config = proxy_config(f"{base}/mcp").replace(
            "request_timeout: 5s", f"request_timeout: {request_timeout}"
        )
        async with run_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as http:
            return await http.post(proxy.mcp_url, json=message, headers=HEADERS)


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == 5
    return body["error"]


async def test_refused_connection_is_a_forward_error_with_reason() -> None:
    sock = bind("127.0.0.1", 0, "test")
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    async with run_proxy(proxy_config(f"http://127.0.0.1:{port}/mcp")) as proxy, httpx.AsyncClient() as http:
        response = await http.post(proxy.mcp_url, json=CALL, headers=HEADERS)
    error = _error(response)
    assert error["code"] == -32603
    assert error["data"]["failure_class"] == "upstream_forward_error"
    assert error["data"]["failure_reason"] == "connection_refused"


async def test_upstream_silent_past_request_timeout_is_a_timeout() -> None:
    async def slow(_: dict[str, Any]) -> tuple[int, str, bytes]:
        await asyncio.sleep(5)
        return 200, "application/json", b"{}"

    error = _error(await _call_through(slow, request_timeout="1s"))
    assert error["data"] == {"failure_class": "upstream_forward_error", "failure_reason": "timeout"}


async def test_non_json_rpc_body_is_invalid_jsonrpc() -> None:
    async def html(_: dict[str, Any]) -> tuple[int, str, bytes]:
        return 200, "text/html", b"<html>hello</html>"

    error = _error(await _call_through(html))
    assert error["code"] == -32603
    assert error["data"]["failure_class"] == "upstream_invalid_jsonrpc"
    assert error["data"]["upstream_http_status"] == 200


async def test_response_with_another_id_is_an_id_mismatch() -> None:
    async def wrong_id(_: dict[str, Any]) -> tuple[int, str, bytes]:
        return 200, "application/json", json.dumps({"jsonrpc": "2.0", "id": 999, "result": {}}).encode()

    error = _error(await _call_through(wrong_id))
    assert error["data"]["failure_class"] == "upstream_id_mismatch"
    assert error["data"]["expected_request_id"] == 5
    assert error["data"]["upstream_response_id"] == 999


async def test_response_without_id_is_invalid_with_missing_response_id() -> None:
    async def no_id(_: dict[str, Any]) -> tuple[int, str, bytes]:
        return 200, "application/json", json.dumps({"jsonrpc": "2.0", "result": {}}).encode()

    error = _error(await _call_through(no_id))
    assert error["data"]["failure_class"] == "upstream_invalid_jsonrpc"
    assert error["data"]["invalid_reason"] == "missing_response_id"


async def test_upstream_500_without_json_rpc_body_is_a_forward_error_with_status() -> None:
    async def crash(_: dict[str, Any]) -> tuple[int, str, bytes]:
        return 500, "text/plain", b"Internal Server Error"

    error = _error(await _call_through(crash))
    assert error["data"]["failure_class"] == "upstream_forward_error"
    assert error["data"]["upstream_http_status"] == 500


async def test_sse_stream_that_ends_without_a_response_gets_a_final_error_event() -> None:
    async def truncated(_: dict[str, Any]) -> tuple[int, str, bytes]:
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": 1, "progress": 1},
        }
        return 200, "text/event-stream", b"event: message\ndata: " + json.dumps(note).encode() + b"\n\n"

    response = await _call_through(truncated)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    assert events[0]["method"] == "notifications/progress"
    assert events[-1]["id"] == 5
    assert events[-1]["error"]["code"] == -32603
    assert events[-1]["error"]["data"]["failure_reason"] == "stream_ended"


WEATHER_TOOL = {"name": "get_weather", "inputSchema": {"type": "object"}}


def streaming_upstream(chunks: Callable[[], AsyncIterator[bytes]], content_type: str) -> Any:
    """A raw ASGI upstream answering ``tools/call`` with ``chunks()`` as a streamed (chunked) body,
    and anything else (the proxy's own ``tools/list``) properly."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = json.loads(await read_body(receive, 1 << 20) or b"{}")
        if message.get("method") != "tools/call":
            await send_bytes(
                send,
                200,
                json.dumps(
                    {"jsonrpc": "2.0", "id": message.get("id"), "result": {"tools": [WEATHER_TOOL]}}
                ).encode(),
                {},
                "application/json",
            )
            return
        headers = [(b"content-type", content_type.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with contextlib.suppress(OSError, RuntimeError):
            async for chunk in chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    return app


async def test_an_answer_past_max_response_bytes_is_response_too_large() -> None:
    sent = 0

    async def endless_json() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"jsonrpc":"2.0","id":5,"result":{"text":"'
        while sent < 64 << 20:  # the proxy stops at 1 MiB (uvicorn drops what follows)
            sent += 64 << 10
            yield b"x" * (64 << 10)

    async with serve_asgi(streaming_upstream(endless_json, "application/json"), lifespan="off") as base:
        config = proxy_config(f"{base}/mcp").replace(
            "request_timeout: 5s", "request_timeout: 5s\n  max_response_bytes: 1048576"
        )
        async with run_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as http:
            error = _error(await http.post(proxy.mcp_url, json=CALL, headers=HEADERS))
    assert error["code"] == -32603
    assert error["data"] == {
        "failure_class": "response_too_large",
        "failure_reason": "max_response_bytes",
        "max_response_bytes": 1048576,
    }


async def test_a_stream_that_never_answers_ends_in_a_timeout_at_request_timeout_from_the_send() -> None:
    """Notifications do not extend ``request_timeout``: it is counted from the send."""

    async def chatter() -> AsyncIterator[bytes]:
        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}
        for _ in range(40):  # 2 s: past the proxy's deadline, short enough for the server to stop
            yield b"event: message\ndata: " + json.dumps(note).encode() + b"\n\n"
            await asyncio.sleep(0.05)

    async with serve_asgi(streaming_upstream(chatter, "text/event-stream"), lifespan="off") as base:
        config = proxy_config(f"{base}/mcp").replace("request_timeout: 5s", "request_timeout: 1s")
        async with run_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as http:
            started = time.monotonic()
            response = await http.post(proxy.mcp_url, json=CALL, headers=HEADERS)
            took = time.monotonic() - started
    events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    assert events[0]["method"] == "notifications/message"
    assert events[-1]["id"] == 5
    assert events[-1]["error"]["data"] == {
        "failure_class": "upstream_forward_error",
        "failure_reason": "timeout",
    }
    assert 1.0 <= took < 4.0


async def test_upstream_json_rpc_error_with_http_status_is_relayed_unchanged() -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": "server-error", "error": {"code": -32600, "message": "Bad Request"}}
    )

    async def rejects(_: dict[str, Any]) -> tuple[int, str, bytes]:
        return 400, "application/json", body.encode()

    response = await _call_through(rejects)
    assert response.status_code == 400
    assert response.text == body


@pytest.mark.parametrize("status", [404, 405])
async def test_upstream_session_and_method_statuses_are_relayed_on_get(status: int) -> None:
    async def refuses(_: dict[str, Any]) -> tuple[int, str, bytes]:
        return status, "text/plain", b"no"

    async with serve_asgi(fake_upstream(refuses), lifespan="off") as base:
        async with run_proxy(proxy_config(f"{base}/mcp")) as proxy, httpx.AsyncClient(timeout=10) as http:
            response = await http.get(proxy.mcp_url, headers={"accept": "text/event-stream"})
    assert response.status_code == status


async def test_nameless_tool_call_is_rejected_with_invalid_params_and_not_forwarded() -> None:
    seen: list[dict[str, Any]] = []

    async def record(body: dict[str, Any]) -> tuple[int, str, bytes]:
        seen.append(body)
        return (
            200,
            "application/json",
            json.dumps({"jsonrpc": "2.0", "id": body.get("id"), "result": {}}).encode(),
        )

    message = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"arguments": {}}}
    error = _error(await _call_through(record, message))
    assert error["code"] == -32602
    assert error["data"]["reason"] == "missing_tool_name"
    # The primer's own traffic (era probe, tools/list) may reach the upstream; no tools/call may.
    assert [body for body in seen if body.get("method") not in ("tools/list", "server/discover")] == []


@pytest.mark.parametrize("failure", ["refused", "timeout"])
async def test_an_upstream_failure_shows_the_upstream_url_without_its_credentials(
    failure: str, tmp_path: Path
) -> None:
    """Issue 22 point 7: wherever a URL is shown (the agent's error, the audit record, the log),
    only its scheme, host and port appear, never ``user:password@`` or a token in its path/query."""
    secret_bits = ("upuser-4b1d", "uppass-8e2f", "path-token-77aa", "query-token-91cc")
    db = tmp_path / "audit.db"

    async def silent(_: dict[str, Any]) -> tuple[int, str, bytes]:
        await asyncio.sleep(30)
        return 200, "application/json", b"{}"

    async with contextlib.AsyncExitStack() as stack:
        if failure == "refused":
            sock = bind("127.0.0.1", 0, "test")
            port = sock.getsockname()[1]
            sock.close()  # nothing listens there now
        else:
            base = await stack.enter_async_context(serve_asgi(fake_upstream(silent), lifespan="off"))
            port = int(base.rsplit(":", 1)[1])
        url = f"http://upuser-4b1d:uppass-8e2f@127.0.0.1:{port}/mcp/path-token-77aa?key=query-token-91cc"
        config = proxy_config(url, audit_path=str(db)).replace("request_timeout: 5s", "request_timeout: 1s")
        proxy = await stack.enter_async_context(run_proxy(config))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        response = await http.post(proxy.mcp_url, json=CALL, headers=HEADERS)
        banner = proxy.out.getvalue()  # type: ignore[attr-defined]
    error = _error(response)
    assert error["data"]["failure_reason"] == ("connection_refused" if failure == "refused" else "timeout")
    records = audit_records(db, tool="get_weather")
    assert len(records) == 1
    shown = [response.text, json.dumps(records, default=str), banner]
    for text in shown:
        for bit in secret_bits:
            assert bit not in text
    if failure == "refused":
        assert f"http://127.0.0.1:{port}" in error["message"]
