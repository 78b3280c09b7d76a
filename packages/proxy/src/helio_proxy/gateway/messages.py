"""The gateway for message-based agent transports (``helio wrap`` over stdio, and the like).

A transport that carries bare JSON-RPC messages takes the messages each :class:`Reply` holds
(:func:`reply_messages`: no parsing, they are messages already) and builds an :class:`Inbound` for
each message it reads (:func:`message_inbound`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final

from helio_proxy.gateway.exchange import EmptyReply, Inbound, JsonReply, Reply, UpstreamMessage
from helio_proxy.jsonrpc import Message

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


async def reply_messages(reply: Reply) -> AsyncIterator[UpstreamMessage]:
    """Each JSON-RPC message a reply holds, in order.

    A JSON reply is one message (an empty or non-JSON body is none); a stream reply holds its
    messages (not those that only carry an event id); an empty reply (``202``) holds none.
    """
    if isinstance(reply, EmptyReply):
        return
    if isinstance(reply, JsonReply):
        message = (
            UpstreamMessage(reply.body)
            if reply.payload is None
            else UpstreamMessage(reply.body, payload=reply.payload)
        )
        if reply.body.strip() and message.payload is not None:
            yield message
        return
    messages = reply.messages
    try:
        async for message in messages:
            if message.raw:
                yield message
    finally:
        aclose = getattr(messages, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):
                await aclose()
