"""The message core: an upstream's answer as messages, relayed to the agent, framed at the edge.

The upstream side is a hand-built :class:`MessageStream` or :class:`StatusAnswer` (what every
upstream transport hands the gateway), so each test looks at one rule of the relay: which bytes
reach the agent, in what order, with which event ids, and which failure a broken answer becomes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from helio_proxy.errors import UpstreamError
from helio_proxy.gateway import exchange
from helio_proxy.gateway.exchange import (
    JsonReply,
    MessageStream,
    SingleAnswer,
    StatusAnswer,
    StreamReply,
    UpstreamMessage,
)
from helio_proxy.gateway.relay import relay_request
from helio_proxy.jsonrpc import dumps
from helio_proxy.transports.sse import SseParser, encode_message

RESPONSE = b'{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}'
PROGRESS = b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}'


async def _of(*messages: UpstreamMessage, pause: float | None = None) -> AsyncIterator[UpstreamMessage]:
    for message in messages:
        yield message
    if pause is not None:
        await asyncio.sleep(pause)


class Seen:
    """A response observer that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, UpstreamError | None]] = []

    def __call__(self, payload: dict[str, Any] | None, error: UpstreamError | None) -> None:
        self.calls.append((payload, error))


async def _drain(reply: StreamReply) -> list[UpstreamMessage]:
    return [message async for message in reply.messages]


async def test_a_single_answer_is_relayed_as_json_with_its_bytes_untouched() -> None:
    seen = Seen()
    raw = b'{ "jsonrpc": "2.0", "id": 7, "result": {} }'  # spacing the proxy would not write
    answer = SingleAnswer.of(UpstreamMessage(raw), {"mcp-session-id": "s"})
    reply = await relay_request(answer, 7, accepts_sse=True, observe=seen)
    assert isinstance(reply, JsonReply)
    assert (reply.status, reply.body, dict(reply.headers)) == (200, raw, {"mcp-session-id": "s"})
    assert seen.calls == [({"jsonrpc": "2.0", "id": 7, "result": {}}, None)]


async def test_a_single_answer_for_another_id_is_an_id_mismatch_failure() -> None:
    seen = Seen()

    async def read() -> UpstreamMessage:
        return UpstreamMessage(b'{"jsonrpc":"2.0","id":8,"result":{}}')

    answer = SingleAnswer(read, detail={"upstream_http_status": 200})
    reply = await relay_request(answer, 7, accepts_sse=True, observe=seen)
    assert isinstance(reply, JsonReply)
    error = reply.payload["error"]
    assert (error["code"], error["data"]["failure_class"]) == (-32603, "upstream_id_mismatch")
    assert (error["data"]["expected_request_id"], error["data"]["upstream_response_id"]) == (7, 8)
    assert error["data"]["upstream_http_status"] == 200
    assert seen.calls[0][0] is None
    assert seen.calls[0][1] is not None


async def test_a_stream_relays_every_message_in_order_with_its_event_id_and_observes_the_response_once() -> (
    None
):
    seen = Seen()
    answer = MessageStream(
        _of(UpstreamMessage(PROGRESS, "e1"), UpstreamMessage(RESPONSE, "e2"), UpstreamMessage(PROGRESS, "e3"))
    )
    reply = await relay_request(answer, 7, accepts_sse=True, observe=seen)
    assert isinstance(reply, StreamReply)
    relayed = await _drain(reply)
    assert [(m.raw, m.event_id) for m in relayed] == [(PROGRESS, "e1"), (RESPONSE, "e2"), (PROGRESS, "e3")]
    assert len(seen.calls) == 1
    assert seen.calls[0][0] is not None
    assert seen.calls[0][0]["id"] == 7


async def test_a_stream_for_a_client_without_sse_is_collapsed_to_its_response() -> None:
    answer = MessageStream(_of(UpstreamMessage(PROGRESS), UpstreamMessage(RESPONSE)))
    reply = await relay_request(answer, 7, accepts_sse=False)
    assert isinstance(reply, JsonReply)
    assert reply.body == RESPONSE


async def test_a_stream_that_ends_unanswered_gets_a_final_stream_ended_error_unless_it_is_resumable() -> None:
    ended = await relay_request(MessageStream(_of(UpstreamMessage(PROGRESS))), 7, accepts_sse=True)
    assert isinstance(ended, StreamReply)
    last = (await _drain(ended))[-1].payload
    assert (last["id"], last["error"]["data"]["failure_reason"]) == (7, "stream_ended")
    resumable = await relay_request(MessageStream(_of(UpstreamMessage(PROGRESS, "1"))), 7, accepts_sse=True)
    assert isinstance(resumable, StreamReply)
    assert [m.raw for m in await _drain(resumable)] == [PROGRESS]


async def test_a_stream_past_its_deadline_ends_in_a_timeout_error_for_the_request() -> None:
    seen = Seen()
    deadline = asyncio.get_running_loop().time() + 0.05
    answer = MessageStream(_of(UpstreamMessage(PROGRESS), pause=5))
    reply = await relay_request(answer, 7, accepts_sse=True, observe=seen, deadline=deadline)
    assert isinstance(reply, StreamReply)
    async with asyncio.timeout(2):
        relayed = await _drain(reply)
    assert relayed[0].raw == PROGRESS
    assert relayed[-1].payload["error"]["data"]["failure_reason"] == "timeout"
    assert seen.calls[0][1] is not None


async def test_a_status_answer_is_relayed_with_its_status_and_a_202_to_a_request_is_a_failure() -> None:
    body = dumps({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Session not found"}})
    expired = StatusAnswer(404, body, {"mcp-session-id": "s"}, None)
    reply = await relay_request(expired, 7, accepts_sse=True)
    assert isinstance(reply, JsonReply)
    assert (reply.status, reply.body) == (404, body)
    accepted = await relay_request(StatusAnswer(202), 7, accepts_sse=True)
    assert isinstance(accepted, JsonReply)
    data = accepted.payload["error"]["data"]
    assert (accepted.status, data["failure_class"], data["failure_reason"]) == (
        200,
        "upstream_invalid_jsonrpc",
        "http_status",
    )


async def test_closing_an_answer_early_releases_it_once() -> None:
    released: list[bool] = []
    answer = MessageStream(
        _of(UpstreamMessage(PROGRESS), UpstreamMessage(RESPONSE)), release=lambda: released.append(True)
    )
    messages = aiter(answer)
    await anext(messages)
    await messages.aclose()  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    answer.close()
    assert released == [True]


def test_a_message_without_an_id_is_never_parsed_to_find_the_response() -> None:
    flood = UpstreamMessage(b'{"jsonrpc":"2.0","method":"notifications/message","params":{}}')
    assert not flood.answers(7)
    assert flood._payload is exchange._UNPARSED  # pyright: ignore[reportPrivateUsage]
    assert UpstreamMessage(RESPONSE).answers(7)
    assert not UpstreamMessage(RESPONSE).answers("7")  # same value, other type: not the response


def test_the_http_edge_frames_a_message_as_one_sse_event_with_its_id() -> None:
    """Spec (streamable HTTP, resumability): event ids let the client resume with Last-Event-ID."""
    [event] = SseParser().feed(encode_message(UpstreamMessage(RESPONSE, "42")))
    assert (event.event, event.id, event.data.encode()) == ("message", "42", RESPONSE)
    pretty = b'{\n  "jsonrpc": "2.0",\n  "id": 7,\n  "result": {}\n}'
    [event] = SseParser().feed(encode_message(UpstreamMessage(pretty)))
    assert event.data.encode() == pretty
    [bare] = SseParser().feed(encode_message(UpstreamMessage(b"", "0")))
    assert (bare.id, bare.is_message) == ("0", False)


def test_the_http_edge_keeps_an_events_retry_for_the_clients_reconnection() -> None:
    """Spec (SSE, streamable HTTP resumability): the server's ``retry`` sets the client's reconnection delay."""
    [event] = SseParser().feed(encode_message(UpstreamMessage(b"", "5", retry=500)))
    assert (event.id, event.retry) == ("5", 500)
    stamped = UpstreamMessage(RESPONSE, "6", retry=250).replaced({"jsonrpc": "2.0", "id": 7, "result": {}})
    assert (stamped.event_id, stamped.retry, stamped.payload["id"]) == ("6", 250, 7)
