"""JSON-RPC batches on ``POST /mcp``, for the protocol revisions that allow them.

MCP 2025-03-26 (and the 2024-11-05 HTTP+SSE era before it) let a client POST a JSON array of
messages; 2025-06-18 removed batches. A batch is accepted when the request's
``MCP-Protocol-Version`` is absent (the spec's fallback is 2025-03-26) or names one of
:data:`BATCH_REVISIONS`; otherwise it gets ``400`` / ``-32600``.

Each element goes through the gateway on its own, exactly as if it had been POSTed alone (every
``tools/call`` in a batch is governed and audited separately), all of them concurrently. The
answer is one JSON array holding every response, in the order of the batch; an element that is
not a valid message is answered in place with its JSON-RPC error (one repeating an object key, or
a ``tools/call`` without an ``id``, is also recorded as ``rejected``). A batch of notifications and
responses only gets ``202``. Answers are collected as JSON, so server notifications sent while
a batched request runs (progress, logging) are not delivered: send a request alone to stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Final, cast

from helio_proxy.gateway import Gateway, Inbound
from helio_proxy.gateway.exchange import EmptyReply, JsonReply, Reply
from helio_proxy.jsonrpc import INTERNAL_ERROR, EnvelopeError, Message, error_payload, read_json

BATCH_REVISIONS: Final = frozenset({"2024-11-05", "2025-03-26"})
"""Protocol revisions whose clients may send batches."""


def batch_refusal(headers: Mapping[str, str]) -> str | None:
    """Why a batch may not be sent under the request's protocol revision (``None``: it may)."""
    version = headers.get("mcp-protocol-version")
    if version is None or version in BATCH_REVISIONS:
        return None
    return (
        f"JSON-RPC batches are not part of MCP protocol revision {version} "
        "(only 2025-03-26 and earlier allow them); send one message per request"
    )


async def _answer(reply: Reply) -> dict[str, Any] | None:
    """The JSON-RPC response a reply carries (``None`` for a 202)."""
    if isinstance(reply, EmptyReply):
        return None
    if isinstance(reply, JsonReply):
        payload = reply.payload if reply.payload is not None else read_json(reply.body)
        return payload if isinstance(payload, dict) else None  # pyright: ignore[reportUnknownVariableType]
    # A stream reply (it should not happen: elements are asked for as JSON): its last message.
    last: dict[str, Any] | None = None
    async for message in reply.messages:
        payload: Any = message.payload
        if isinstance(payload, dict):
            last = cast(dict[str, Any], payload)
    return last


async def answer_batch(
    gateway: Gateway,
    items: list[Message | EnvelopeError],
    headers: Mapping[str, str],
    peer: tuple[str, int] | None = None,
    *,
    agent_id: str | None = None,
) -> Reply:
    """Run every element through ``gateway``; one JSON array of the responses (or ``202``)."""

    async def one(item: Message | EnvelopeError) -> dict[str, Any] | None:
        if isinstance(item, EnvelopeError):
            if item.reason is not None:
                return (await gateway.refuse(item, headers, agent_id=agent_id)).payload
            return error_payload(item.request_id, item.code, str(item))
        answer = await _answer(
            await gateway.handle(
                Inbound(message=item, headers=headers, accepts_sse=False, agent_id=agent_id, peer=peer)
            )
        )
        if answer is None and item.id is not None:
            return error_payload(item.id, INTERNAL_ERROR, "the upstream gave no answer to this request")
        return answer

    answers = await asyncio.gather(*(one(item) for item in items))
    responses = [answer for answer in answers if answer is not None]
    if not responses:
        return EmptyReply(202)
    body = json.dumps(responses, ensure_ascii=False, separators=(",", ":")).encode()
    return JsonReply(200, body, payload=responses)
