"""Putting the data plane's version of an answer into the reply the agent gets."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from helio_proxy.dataplane.inspector import ResultCheck
from helio_proxy.gateway.exchange import JsonReply, Reply, StreamReply
from helio_proxy.jsonrpc import Message, dumps
from helio_proxy.transports.sse import encode_event, iter_events


def with_result(reply: Reply, check: ResultCheck) -> Reply:
    """``reply`` with the answer :meth:`ResultCheck.observe` replaced (redacted, or withheld as an error)."""
    if isinstance(reply, JsonReply):
        if check.replaced is None or reply.payload is not check.replaced:
            return reply
        return JsonReply(reply.status, dumps(check.replaced), reply.headers, check.replaced)
    if isinstance(reply, StreamReply):
        return dataclasses.replace(reply, chunks=_replacing(reply.chunks, check))
    return reply


async def _replacing(chunks: AsyncIterator[bytes], check: ResultCheck) -> AsyncIterator[bytes]:
    # The relay yields one SSE event per chunk and calls the observer just before it yields the
    # response event: the first chunk after ``replaced`` is set carries the answer to replace.
    done = False
    try:
        async for chunk in chunks:
            if not done and check.replaced is not None:
                done = True
                chunk = await _replace_event(chunk, check.replaced)
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _replace_event(chunk: bytes, payload: dict[str, Any]) -> bytes:
    async def one() -> AsyncIterator[bytes]:
        yield chunk

    async for event in iter_events(one()):
        return encode_event(dumps(payload), event_id=event.id)
    return chunk


def with_arguments(message: Message, arguments: dict[str, Any]) -> Message:
    """The ``tools/call`` message with its arguments replaced (the bytes forwarded are re-encoded)."""
    params = dict(message.params or {})
    params["arguments"] = arguments
    payload = {**message.payload, "params": params}
    return Message(kind=message.kind, payload=payload, raw=dumps(payload))
