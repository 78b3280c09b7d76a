"""Legacy SSE sessions on the agent side: what a session queues, whom it lets post, routing."""

from __future__ import annotations

import json

import pytest

from helio_proxy.transports.downstream.sse import SESSION_QUEUE_LIMIT, SseSession
from helio_proxy.transports.downstream.streamable_http import _route  # pyright: ignore[reportPrivateUsage]


def _session(credential: str | None = None) -> SseSession:
    headers = {"authorization": "x", "mcp-session-id": "client-own", "x-helio-session-id": "run-1"}
    return SseSession("s1", credential, headers, 0.0)


async def test_a_message_becomes_one_single_line_message_event() -> None:
    session = _session()
    session.deliver(b'{\n  "jsonrpc": "2.0",\n  "id": 1,\n  "result": {}\n}')
    event = session.queue.get_nowait()
    assert event.startswith(b"event: message\ndata: ")
    assert event.endswith(b"\n\n")
    assert event.count(b"\n") == 3
    assert json.loads(event.split(b"data: ", 1)[1]) == {"jsonrpc": "2.0", "id": 1, "result": {}}


async def test_a_client_that_falls_too_far_behind_is_closed_and_later_messages_dropped() -> None:
    session = _session()
    for index in range(SESSION_QUEUE_LIMIT):
        session.deliver(json.dumps({"jsonrpc": "2.0", "method": "n", "params": {"i": index}}).encode())
    assert not session.closed.is_set()
    session.deliver(b'{"jsonrpc":"2.0","method":"one-too-many"}')
    assert session.closed.is_set()
    assert session.close_reason == "the client stopped reading"
    assert session.queue.qsize() == SESSION_QUEUE_LIMIT


@pytest.mark.parametrize(
    ("credential", "presented", "allowed"),
    [
        (None, None, True),
        (None, "Bearer a", False),
        ("Bearer a", None, False),
        ("Bearer a", "Bearer b", False),
        ("Bearer a", "Bearer a", True),
    ],
)
def test_only_the_streams_own_authorization_may_post(
    credential: str | None, presented: str | None, allowed: bool
) -> None:
    assert _session(credential).allows(presented) is allowed


def test_the_client_session_headers_never_reach_the_upstream_leg() -> None:
    session = _session()
    session.upstream_session_id = "upstream-7"
    session.protocol_version = "2025-06-18"
    posted = session.client_headers(
        {"mcp-session-id": "forged", "last-event-id": "9", "x-helio-session-id": "run-2"}
    )
    assert posted == {"x-helio-session-id": "run-2", "mcp-protocol-version": "2025-06-18"}
    own = session.session_headers()
    assert own["mcp-session-id"] == "upstream-7"
    assert own["x-helio-session-id"] == "run-1"


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/mcp", ("/mcp", None)),
        ("/mcp/files", ("/mcp", "files")),
        ("/sse", ("/sse", None)),
        ("/sse/files", ("/sse", "files")),
        ("/messages/files", ("/messages", "files")),
        ("/mcp/a/b", None),
        ("/mcpx", None),
        ("/other", None),
    ],
)
def test_paths_route_to_a_kind_of_endpoint_and_a_mount(
    path: str, route: tuple[str, str | None] | None
) -> None:
    assert _route(path) == route
