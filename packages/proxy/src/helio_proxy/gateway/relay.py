"""Turning an upstream answer into the reply for the agent, unchanged where it is valid.

* ``application/json`` 2xx: the body must be a JSON-RPC response to the request; relayed as is.
* ``text/event-stream``: events are relayed verbatim and in order (server requests and
  notifications that precede the response included). If the client did not accept SSE, the
  response event alone is returned as JSON.
* non-2xx with a JSON-RPC body, or 401/403/404/405: relayed with its status (session expiry,
  auth challenges and "no GET stream" are the client's business).
* anything else: HTTP 200 with JSON-RPC -32603 and ``data.failure_class``.

An answer is read until a ``deadline`` (the send plus ``upstream.request_timeout``): an upstream
that streams forever, or trickles a body, ends in ``failure_reason: timeout`` then (if the agent has
not had its response yet). How many bytes are read is bounded by the transport
(``upstream.max_response_bytes``, ``failure_class: response_too_large``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from helio_proxy.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout
from helio_proxy.gateway.exchange import JsonReply, Reply, StreamReply, UpstreamAnswer, error_reply
from helio_proxy.jsonrpc import (
    INTERNAL_ERROR,
    RequestId,
    dumps,
    error_payload,
    is_jsonrpc_error_payload,
    is_response_for,
)
from helio_proxy.transports.sse import SseEvent, encode_event, iter_events

PASSTHROUGH_STATUSES: Final = frozenset({401, 403, 404, 405, 406, 415})
"""Upstream statuses relayed as they are even without a JSON-RPC body."""

ResponseObserver = Callable[[dict[str, Any] | None, UpstreamError | None], None]
"""Called once per request with the upstream's JSON-RPC response, or the failure instead."""


def upstream_failure(request_id: RequestId | None, error: UpstreamError, *, status: int = 200) -> JsonReply:
    """The agent-facing form of an upstream failure (HTTP 200 for a JSON-RPC request)."""
    data: dict[str, Any] = {"failure_class": error.failure_class, **error.data}
    return error_reply(request_id, INTERNAL_ERROR, error.message, data, status=status)


def _failure_event(request_id: RequestId, error: UpstreamError) -> bytes:
    data: dict[str, Any] = {"failure_class": error.failure_class, **error.data}
    return encode_event(dumps(error_payload(request_id, INTERNAL_ERROR, error.message, data)))


def _check_response(payload: Any, request_id: RequestId, status: int, content_type: str) -> dict[str, Any]:
    if (
        not isinstance(payload, dict)
        or "jsonrpc" not in payload
        or ("result" not in payload and "error" not in payload)
    ):
        raise UpstreamProtocolError(
            "upstream answered with something that is not a JSON-RPC response",
            upstream_http_status=status,
            upstream_content_type=content_type,
        )
    if "id" not in payload or payload["id"] is None:
        raise UpstreamProtocolError(
            "upstream response has no id",
            upstream_http_status=status,
            invalid_reason="missing_response_id",
            expected_request_id=request_id,
        )
    if not is_response_for(payload, request_id):
        raise UpstreamProtocolError(
            "upstream response id does not match the request",
            failure_class="upstream_id_mismatch",
            upstream_http_status=status,
            expected_request_id=request_id,
            upstream_response_id=payload["id"],  # pyright: ignore[reportUnknownArgumentType]
        )
    return payload  # pyright: ignore[reportUnknownVariableType]


def _late() -> UpstreamTimeout:
    return UpstreamTimeout(
        "upstream did not finish its answer within request_timeout", failure_reason="timeout"
    )


async def read_until(response: UpstreamAnswer, deadline: float | None) -> bytes:
    """The whole body, or :class:`UpstreamTimeout` when it is not complete by ``deadline`` (loop time)."""
    if deadline is None:
        return await response.read()
    try:
        async with asyncio.timeout_at(deadline):
            return await response.read()
    except TimeoutError:
        response.close()
        raise _late() from None


async def chunks_until(response: UpstreamAnswer, deadline: float | None) -> AsyncIterator[bytes]:
    """The body as it arrives, ending in :class:`UpstreamTimeout` at ``deadline`` (loop time)."""
    chunks = response.iter_chunks()
    if deadline is None:
        async for chunk in chunks:
            yield chunk
        return
    loop = asyncio.get_running_loop()
    async with contextlib.aclosing(chunks):  # pyright: ignore[reportArgumentType]
        while True:
            # A flood always has the next chunk ready, so awaiting it never suspends and the
            # timeout below would never fire: the deadline is checked before every chunk too.
            if loop.time() >= deadline:
                raise _late()
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _late() from None
            yield chunk


async def events_until(response: UpstreamAnswer, deadline: float | None) -> AsyncIterator[SseEvent]:
    """The answer's SSE events, ending in :class:`UpstreamTimeout` at ``deadline``: checked per
    event too, since one chunk of a flood can hold thousands of events."""
    events = iter_events(chunks_until(response, deadline))
    if deadline is None:
        async for event in events:
            yield event
        return
    clock = asyncio.get_running_loop().time
    async for event in events:
        if clock() >= deadline:
            raise _late()
        yield event


async def relay_request(
    response: UpstreamAnswer,
    request_id: RequestId,
    *,
    accepts_sse: bool,
    observe: ResponseObserver | None = None,
    deadline: float | None = None,
) -> Reply:
    """Build the agent's reply to a JSON-RPC request from the upstream's answer, read until
    ``deadline`` (event-loop time; ``None``: the transport's own timeouts only)."""
    status = response.status
    if response.content_type == "text/event-stream" and 200 <= status < 300:
        if accepts_sse:
            return StreamReply(
                status, _relay_stream(response, request_id, observe, deadline), response.headers
            )
        return await _collapse_stream(response, request_id, observe, deadline)
    try:
        body = await read_until(response, deadline)
    except UpstreamError as exc:
        if observe:
            observe(None, exc)
        return upstream_failure(request_id, exc)
    if 200 <= status < 300 and status != 202:
        try:
            payload = _check_response(_loads(body), request_id, status, response.content_type)
        except UpstreamProtocolError as exc:
            if observe:
                observe(None, exc)
            return upstream_failure(request_id, exc)
        if observe:
            observe(payload, None)
        return JsonReply(status, body, response.headers, payload)
    payload = _loads(body)
    is_jsonrpc_error = is_jsonrpc_error_payload(payload)
    if status >= 400 and (is_jsonrpc_error or status in PASSTHROUGH_STATUSES):
        failure = UpstreamProtocolError(
            f"upstream answered HTTP {status}",
            failure_class="upstream_forward_error",
            upstream_http_status=status,
        )
        if observe:
            observe(payload if is_jsonrpc_error else None, None if is_jsonrpc_error else failure)
        return JsonReply(status, body, response.headers, payload)
    reason = "accepted without answering" if status == 202 else f"answered HTTP {status}"
    failure = UpstreamProtocolError(
        f"upstream {reason}",
        failure_class="upstream_forward_error" if status >= 300 else "upstream_invalid_jsonrpc",
        failure_reason="http_status",
        upstream_http_status=status,
        upstream_content_type=response.content_type,
    )
    if observe:
        observe(None, failure)
    return upstream_failure(request_id, failure)


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


async def _relay_stream(
    response: UpstreamAnswer, request_id: RequestId, observe: ResponseObserver | None, deadline: float | None
) -> AsyncIterator[bytes]:
    answered = False
    resumable = False
    try:
        async for event in events_until(response, deadline):
            resumable = resumable or event.id is not None
            # Only a message with an "id" can be the response: a flood of notifications is not parsed.
            if not answered and event.is_message and '"id"' in event.data:
                payload = event.json()
                if is_response_for(payload, request_id):
                    answered = True
                    if observe:
                        observe(payload, None)
            yield event.raw
    except UpstreamError as exc:
        if not answered:
            if observe:
                observe(None, exc)
            yield _failure_event(request_id, exc)
        return
    except ValueError as exc:  # oversized event
        if not answered:
            failure = UpstreamProtocolError(str(exc))
            if observe:
                observe(None, failure)
            yield _failure_event(request_id, failure)
        return
    if not answered and not resumable:
        # A stream with event ids may be resumed by the client (GET + Last-Event-ID); otherwise
        # the response can never arrive and the client must not wait forever.
        failure = UpstreamProtocolError(
            "upstream closed the stream without answering the request", failure_reason="stream_ended"
        )
        if observe:
            observe(None, failure)
        yield _failure_event(request_id, failure)


async def _collapse_stream(
    response: UpstreamAnswer, request_id: RequestId, observe: ResponseObserver | None, deadline: float | None
) -> JsonReply:
    """For a client that only accepts JSON: wait for the response event and return it alone."""
    event: SseEvent
    try:
        async for event in events_until(response, deadline):
            if event.is_message and '"id"' in event.data:
                payload = event.json()
                if is_response_for(payload, request_id):
                    if observe:
                        observe(payload, None)
                    return JsonReply(200, event.data.encode(), response.headers, payload)
    except UpstreamError as exc:
        if observe:
            observe(None, exc)
        return upstream_failure(request_id, exc)
    except ValueError as exc:
        failure = UpstreamProtocolError(str(exc))
        if observe:
            observe(None, failure)
        return upstream_failure(request_id, failure)
    failure = UpstreamProtocolError(
        "upstream closed the stream without answering the request", failure_reason="stream_ended"
    )
    if observe:
        observe(None, failure)
    return upstream_failure(request_id, failure)
