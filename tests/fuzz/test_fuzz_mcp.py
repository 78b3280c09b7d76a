"""Hostile input on the MCP ingress, over every agent-facing transport: streamable HTTP
(``POST/GET/DELETE /mcp``, batches included), legacy SSE (``POST /messages``) and stdio lines
(``helio wrap``'s server). Each input must get an answer that is not a 5xx, in the JSON-RPC error
shape when it is refused, with ``input_limit_exceeded`` and the cap's name when it breaks a cap;
nothing may be logged as an error (a crash the answer hid), and nothing may hang."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Final

from hypothesis import given
from hypothesis import strategies as st

from helio_proxy.app import HelioApp
from helio_proxy.jsonrpc import INVALID_REQUEST
from helio_proxy.transports.downstream.stdio import StdioServer
from tests.fuzz.proxy import MAX_BODY, fuzz_proxy
from tests.fuzz.strategies import CAPS, Body, bodies, mcp_headers
from tests.fuzz.support import (
    TALLY,
    Answer,
    asgi_request,
    fuzz_settings,
    no_errors_logged,
    record_rss,
    variants,
)

JSON_HEADERS: Final = [
    ("host", "127.0.0.1:3000"),
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
]
INIT: Final = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "fuzz", "version": "1"},
        },
    }
).encode()
INITIALIZED: Final = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


def _is_error_object(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("error"), dict)
        and isinstance(value["error"].get("code"), int)
    )


def _upstream_server_error(answer: Answer) -> bool:
    """The official SDK upstream itself fails some hostile GETs (an unknown ``Last-Event-ID``)
    with HTTP 500; Helio answers those ``502`` with a classified JSON-RPC error. That is the
    upstream's failure surfaced, not Helio's: it is counted apart, and nothing else may be a 5xx."""
    if answer.status != 502 or not answer.headers.get("content-type", "").startswith("application/json"):
        return False
    data = answer.json().get("error", {}).get("data", {})
    return data.get("failure_reason") == "upstream_http_error" and data.get("upstream_http_status", 0) >= 500


def check_refusal_shape(answer: Answer, body: Body, request: str = "") -> None:
    """Never a 5xx of Helio's own; a refusal (4xx with a body) is a JSON-RPC error; a cap breach
    says which cap."""
    context = f"{request} input {body.raw[:160]!r} -> {answer.status} {answer.body[:240]!r}"
    if _upstream_server_error(answer):
        TALLY["MCP streamable HTTP: of those, upstream HTTP 500s answered 502"] += 1
        return
    assert 100 <= answer.status < 500, context
    if answer.status >= 400 and answer.body:
        assert answer.headers.get("content-type", "").startswith("application/json"), context
        payload = answer.json()
        assert _is_error_object(payload), context
    if answer.status == 200 and answer.headers.get("content-type", "").startswith("application/json"):
        payload = answer.json()
        items = payload if isinstance(payload, list) else [payload]
        assert all(isinstance(item, dict) and item.get("jsonrpc") == "2.0" for item in items), context
    if body.breaks is not None:
        assert_breach(answer.status, answer.json(), body)


def assert_breach(status: int, payload: Any, body: Body) -> None:
    context = f"input {body.raw[:160]!r} -> {status} {payload!r:.240}"
    assert status == 400, context
    error = payload["error"]
    assert error["code"] == INVALID_REQUEST, context
    assert error["data"]["reason"] == "input_limit_exceeded", context
    assert error["data"]["limit"] == body.breaks, context
    assert error["data"]["max"] == getattr(CAPS, body.breaks.replace("json_", "")), context


async def _initialize(app: HelioApp) -> str:
    assert app.mcp_app is not None
    init = await asgi_request(app.mcp_app, "POST", "/mcp", headers=JSON_HEADERS, body=INIT)
    assert init.status == 200, init.body
    session = init.headers["mcp-session-id"]
    headers = [*JSON_HEADERS, ("mcp-session-id", session)]
    assert (await asgi_request(app.mcp_app, "POST", "/mcp", headers=headers, body=INITIALIZED)).status == 202
    return session


async def test_streamable_http_ingress_answers_every_hostile_input_without_5xx(tmp_path: Path) -> None:
    async with fuzz_proxy(tmp_path) as app:
        assert app.mcp_app is not None
        mcp = app.mcp_app
        loop = asyncio.get_running_loop()
        session = await _initialize(app)

        async def send_all(verb: str, headers: list[tuple[str, str]], raws: list[bytes]) -> list[Answer]:
            return [await asgi_request(mcp, verb, "/mcp", headers=headers, body=raw) for raw in raws]

        @given(
            body=bodies,
            headers=mcp_headers(),
            in_session=st.booleans(),
            method=st.sampled_from("PPPPPPPGD"),
            seed=st.integers(0, 2**32),
        )
        @fuzz_settings()
        def one(body: Body, headers: list[tuple[str, str]], in_session: bool, method: str, seed: int) -> None:
            if body.breaks is not None:
                headers = list(JSON_HEADERS)
            if in_session:
                headers = [*headers, ("mcp-session-id", session)]
            verb = {"P": "POST", "G": "GET", "D": "DELETE"}[method] if body.breaks is None else "POST"
            if verb == "DELETE":
                headers = [(k, v) for k, v in headers if k != "mcp-session-id"]  # keep the session open
            raws = [body.raw, *variants(body.raw, seed)]
            answers = asyncio.run_coroutine_threadsafe(send_all(verb, headers, raws), loop).result()
            TALLY["MCP streamable HTTP (POST/GET/DELETE /mcp, batches)"] += len(raws)
            check_refusal_shape(answers[0], body, f"{verb} {headers}")
            for raw, answer in zip(raws[1:], answers[1:], strict=True):
                check_refusal_shape(answer, Body(raw), f"{verb} {headers}")

        with no_errors_logged(loop) as errors:
            await asyncio.to_thread(one)
        assert errors == []
        record_rss("mcp-http")


async def _open_sse(mcp: Any) -> tuple[asyncio.Task[None], asyncio.Event, list[bytes]]:
    """A legacy SSE stream held open in-process; its events (bytes) land in the list."""
    events: list[bytes] = []
    leave = asyncio.Event()
    opened = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            events.append(message["body"])
            del events[:-50]  # keep the tail only: a long campaign must not grow the test's memory
            opened.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/sse",
        "raw_path": b"/sse",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"accept", b"text/event-stream"), (b"host", b"127.0.0.1:3000")],
        "client": ("127.0.0.1", 40001),
        "server": ("127.0.0.1", 3000),
    }
    task = asyncio.ensure_future(mcp(scope, receive, send))
    async with asyncio.timeout(10):
        await opened.wait()
    return task, leave, events


async def test_legacy_sse_ingress_answers_every_hostile_input_without_5xx(tmp_path: Path) -> None:
    async with fuzz_proxy(tmp_path) as app:
        assert app.mcp_app is not None
        mcp = app.mcp_app
        loop = asyncio.get_running_loop()
        stream, leave, events = await _open_sse(mcp)
        endpoint = next(line for line in b"".join(events).split(b"\n") if line.startswith(b"data:"))[
            5:
        ].strip()
        path, _, query = endpoint.decode().partition("?")
        post = await asgi_request(mcp, "POST", path, headers=JSON_HEADERS, body=INIT, query=query.encode())
        assert post.status == 202
        assert (
            await asgi_request(
                mcp, "POST", path, headers=JSON_HEADERS, body=INITIALIZED, query=query.encode()
            )
        ).status == 202

        async def send_all(headers: list[tuple[str, str]], raws: list[bytes], session: str) -> list[Answer]:
            return [
                await asgi_request(mcp, "POST", path, headers=headers, body=raw, query=session.encode())
                for raw in raws
            ]

        @given(
            body=bodies,
            headers=mcp_headers(),
            session=st.sampled_from([query, query, query, "sessionId=nope", ""]),
            seed=st.integers(0, 2**32),
        )
        @fuzz_settings()
        def one(body: Body, headers: list[tuple[str, str]], session: str, seed: int) -> None:
            if body.breaks is not None:
                headers, session = list(JSON_HEADERS), query
            raws = [body.raw, *variants(body.raw, seed)]
            answers = asyncio.run_coroutine_threadsafe(send_all(headers, raws, session), loop).result()
            TALLY["MCP legacy SSE (POST /messages)"] += len(raws)
            for raw, answer in zip(raws, answers, strict=True):
                if answer.status == 202:
                    assert answer.body == b"", answer.body
                check_refusal_shape(answer, body if raw is body.raw else Body(raw), f"{session} {headers}")

        with no_errors_logged(loop) as errors:
            await asyncio.to_thread(one)
            leave.set()
            async with asyncio.timeout(10):
                await stream
        assert errors == []
        record_rss("mcp-sse")


async def _stdio_exchange(
    app: HelioApp, line: bytes, session_id: str | None
) -> tuple[StdioServer, list[Any]]:
    """One stdin line through a fresh ``helio wrap`` server in ``session_id``; what it wrote."""
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    reader = asyncio.StreamReader(limit=MAX_BODY + 1)
    reader.feed_data(line + b"\n")
    reader.feed_eof()
    server = StdioServer(app.gateway, reader, write, max_line_bytes=MAX_BODY, limits=CAPS)
    server.session_id = session_id
    async with asyncio.timeout(10):
        await server.serve()
    out = b"".join(written)
    assert out == b"" or out.endswith(b"\n"), out
    return server, [json.loads(part) for part in out.splitlines()]


async def test_stdio_lines_get_answers_without_crashing_the_wrap_server(tmp_path: Path) -> None:
    async with fuzz_proxy(tmp_path) as app:
        loop = asyncio.get_running_loop()
        first, answers = await _stdio_exchange(app, INIT, None)
        assert answers[0]["id"] == 0
        assert "result" in answers[0]
        session = first.session_id

        async def send_all(raws: list[bytes]) -> list[list[Any]]:
            return [(await _stdio_exchange(app, raw, session))[1] for raw in raws]

        @given(body=bodies, seed=st.integers(0, 2**32))
        @fuzz_settings()
        def one(body: Body, seed: int) -> None:
            raws = [body.raw, *variants(body.raw, seed)]
            every = asyncio.run_coroutine_threadsafe(send_all(raws), loop).result()
            TALLY["MCP stdio lines (helio wrap)"] += len(raws)
            for raw, answers in zip(raws, every, strict=True):
                context = f"input {raw[:160]!r} -> {answers!r:.240}"
                assert all(isinstance(a, dict) and a.get("jsonrpc") == "2.0" for a in answers), context
            if body.breaks is not None:
                assert len(every[0]) == 1, every[0]
                assert_breach(400, every[0][0], body)

        with no_errors_logged(loop) as errors:
            await asyncio.to_thread(one)
        assert errors == []
        record_rss("mcp-stdio")
