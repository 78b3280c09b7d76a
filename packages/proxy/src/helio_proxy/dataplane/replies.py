"""Putting the data plane's version of an answer into the reply the agent gets."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from helio_proxy.dataplane.inspector import ResultCheck
from helio_proxy.gateway.exchange import JsonReply, Reply, StreamReply, UpstreamMessage
from helio_proxy.jsonrpc import Message, dumps


def with_result(reply: Reply, check: ResultCheck) -> Reply:
    """``reply`` with the answer :meth:`ResultCheck.observe` replaced (redacted, or withheld as an error)."""
    if isinstance(reply, JsonReply):
        if check.replaced is None or reply.payload is not check.replaced:
            return reply
        return JsonReply(reply.status, dumps(check.replaced), reply.headers, check.replaced)
    if isinstance(reply, StreamReply):
        return dataclasses.replace(reply, messages=_replacing(reply.messages, check))
    return reply


async def _replacing(
    messages: AsyncIterator[UpstreamMessage], check: ResultCheck
) -> AsyncIterator[UpstreamMessage]:
    # The relay calls the observer just before it yields the response: the first message after
    # ``replaced`` is set is the answer to replace (its event id kept).
    done = False
    try:
        async for message in messages:
            if not done and check.replaced is not None:
                done = True
                message = message.replaced(check.replaced)
            yield message
    finally:
        aclose = getattr(messages, "aclose", None)
        if aclose is not None:
            await aclose()


def with_arguments(message: Message, arguments: dict[str, Any]) -> Message:
    """The ``tools/call`` message with its arguments replaced (the bytes forwarded are re-encoded)."""
    params = dict(message.params or {})
    params["arguments"] = arguments
    payload = {**message.payload, "params": params}
    return Message(kind=message.kind, payload=payload, raw=dumps(payload))
