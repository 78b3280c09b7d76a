"""Replies back to bare messages (message-based agent transports) and the stdio line framing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from helio_proxy.gateway.exchange import EmptyReply, JsonReply, StreamReply, UpstreamMessage
from helio_proxy.gateway.messages import message_inbound, reply_messages
from helio_proxy.jsonrpc import parse
from helio_proxy.transports.ndjson import OVERSIZED, encode_line, read_lines


async def _collect(reply: JsonReply | StreamReply | EmptyReply) -> list[bytes]:
    return [message.raw async for message in reply_messages(reply)]


async def _messages(*messages: UpstreamMessage) -> AsyncIterator[UpstreamMessage]:
    for message in messages:
        yield message


async def test_a_json_reply_is_one_message_and_an_empty_reply_none() -> None:
    assert await _collect(JsonReply(200, b'{"jsonrpc":"2.0","id":1,"result":{}}')) == [
        b'{"jsonrpc":"2.0","id":1,"result":{}}'
    ]
    assert await _collect(JsonReply(404, b"")) == []
    assert await _collect(EmptyReply(202)) == []


async def test_a_stream_reply_yields_each_message_in_order_but_not_a_bare_event_id() -> None:
    stream = _messages(
        UpstreamMessage(b'{"a":1}', "1"), UpstreamMessage(b"", "2"), UpstreamMessage(b'{"b":2}')
    )
    assert await _collect(StreamReply(200, stream)) == [b'{"a":1}', b'{"b":2}']


def test_message_inbound_accepts_both_forms_and_carries_the_session() -> None:
    message = parse(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    inbound = message_inbound(message, "abc")
    assert inbound.accepts_sse
    assert inbound.headers["mcp-session-id"] == "abc"
    assert "text/event-stream" in inbound.headers["accept"]
    assert "mcp-session-id" not in message_inbound(message, None).headers


def test_lines_never_contain_embedded_newlines() -> None:
    """Spec (stdio transport): messages are newline-delimited and MUST NOT contain embedded newlines."""
    assert encode_line(b'{"a":1}') == b'{"a":1}\n'
    pretty = b'{\n  "text": "line\\nbreak"\n}'
    line = encode_line(pretty)
    assert line.count(b"\n") == 1
    assert line.endswith(b"\n")
    assert json.loads(line) == {"text": "line\nbreak"}
    with pytest.raises(ValueError, match="Expecting value"):
        encode_line(b"not\njson")


async def test_read_lines_skips_blank_lines_and_marks_oversized_ones() -> None:
    reader = asyncio.StreamReader(limit=16)
    reader.feed_data(b'{"a":1}\r\n\n' + b"x" * 40 + b'\n{"b":2}\n')
    reader.feed_eof()
    lines = [line async for line in read_lines(reader)]
    assert lines[0] == b'{"a":1}'
    assert OVERSIZED in lines
    assert lines[-1] == b'{"b":2}'
