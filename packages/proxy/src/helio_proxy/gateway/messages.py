"""The gateway for message-based agent transports (``helio wrap`` over stdio, and the like).

The gateway answers in streamable-HTTP shapes; a transport that carries bare JSON-RPC messages
turns each :class:`Reply` back into the messages it holds (:func:`reply_messages`) and builds an
:class:`Inbound` for each message it reads (:func:`message_inbound`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Final

from helio_proxy.gateway.exchange import EmptyReply, Inbound, JsonReply, Reply
from helio_proxy.jsonrpc import Message
from helio_proxy.transports.sse import iter_events

MESSAGE_ACCEPT: Final = "application/json, text/event-stream"
"""What a message-based client is taken to accept: everything (it reads every message)."""


def message_inbound(message: Message, session_id: str | None, extra: dict[str, str] | None = None) -> Inbound:
    """An :class:`Inbound` for one message from a message-based client.

    Its synthetic headers accept both answer forms, say the body is JSON and carry the session id
    the downstream adapter holds (none before ``initialize`` has been answered). The network
    transport is ``pipe`` (stdio).
    """
    return Inbound(
        message=message, headers=message_headers(session_id, extra), accepts_sse=True, network="pipe"
    )


def message_headers(session_id: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The synthetic request headers of a message-based client (see :func:`message_inbound`)."""
    headers = {"accept": MESSAGE_ACCEPT, "content-type": "application/json", **(extra or {})}
    if session_id:
        headers["mcp-session-id"] = session_id
    return headers


async def reply_messages(reply: Reply) -> AsyncIterator[bytes]:
    """Each JSON-RPC message a reply holds, as bytes, in order.

    A JSON reply is one message (an empty or non-JSON body is none); a stream reply holds one per
    SSE ``message`` event with data; an empty reply (``202``) holds none.
    """
    if isinstance(reply, EmptyReply):
        return
    if isinstance(reply, JsonReply):
        if reply.body.strip() and _is_json(reply.body):
            yield reply.body
        return
    chunks: AsyncIterator[bytes] = reply.chunks
    events = iter_events(chunks)
    try:
        async for event in events:
            if event.is_message:
                yield event.data.encode()
    finally:
        await _aclose(events)
        await _aclose(chunks)


async def _aclose(iterator: AsyncIterator[object]) -> None:
    if isinstance(iterator, AsyncGenerator):
        with contextlib.suppress(RuntimeError):
            await iterator.aclose()  # pyright: ignore[reportUnknownMemberType]


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, RecursionError):  # a 5,000-digit integer is a plain ValueError
        return False
    return True
