"""Turning an upstream's answer (messages, or a status) into the reply for the agent.

* a streamed answer: every message is relayed in order and unchanged (server requests and
  notifications that precede the response included). If the client did not accept a stream, the
  response alone is returned as JSON.
* a single answer (the upstream answered with its response alone): it must be a JSON-RPC
  response to the request; relayed as is.
* a status (session expired, auth challenge, no stream, a JSON-RPC error with an HTTP status):
  relayed with its status and body; they are the client's business.
* anything else is a failure the transport raised: HTTP 200 with JSON-RPC -32603 and
  ``data.failure_class``.

An answer is read until a ``deadline`` (the send plus ``upstream.request_timeout``): an upstream
that streams forever, or trickles a body, ends in ``failure_reason: timeout`` then (if the agent has
not had its response yet). How many bytes are read is bounded by the transport
(``upstream.max_response_bytes``, ``failure_class: response_too_large``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from helio_proxy.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout
from helio_proxy.gateway.deadlines import deadline_scope
from helio_proxy.gateway.exchange import (
    Answer,
    JsonReply,
    MessageStream,
    Reply,
    SingleAnswer,
    StatusAnswer,
    StreamReply,
    UpstreamMessage,
    error_reply,
)
from helio_proxy.jsonrpc import (
    INTERNAL_ERROR,
    RequestId,
    dumps,
    error_payload,
    is_jsonrpc_error_payload,
    is_response_for,
)

ResponseObserver = Callable[[dict[str, Any] | None, UpstreamError | None], None]
"""Called once per request with the upstream's JSON-RPC response, or the failure instead."""


def upstream_failure(request_id: RequestId | None, error: UpstreamError, *, status: int = 200) -> JsonReply:
    """The agent-facing form of an upstream failure (HTTP 200 for a JSON-RPC request)."""
    data: dict[str, Any] = {"failure_class": error.failure_class, **error.data}
    return error_reply(request_id, INTERNAL_ERROR, error.message, data, status=status)


def _failure_message(request_id: RequestId, error: UpstreamError) -> UpstreamMessage:
    data: dict[str, Any] = {"failure_class": error.failure_class, **error.data}
    payload = error_payload(request_id, INTERNAL_ERROR, error.message, data)
    return UpstreamMessage(dumps(payload), payload=payload)


def _check_response(payload: Any, request_id: RequestId, detail: Mapping[str, Any]) -> dict[str, Any]:
    if (
        not isinstance(payload, dict)
        or "jsonrpc" not in payload
        or ("result" not in payload and "error" not in payload)
    ):
        raise UpstreamProtocolError(
            "upstream answered with something that is not a JSON-RPC response", **detail
        )
    status = detail.get("upstream_http_status")
    located = {"upstream_http_status": status} if status is not None else {}
    if "id" not in payload or payload["id"] is None:
        raise UpstreamProtocolError(
            "upstream response has no id",
            **located,
            invalid_reason="missing_response_id",
            expected_request_id=request_id,
        )
    if not is_response_for(payload, request_id):
        raise UpstreamProtocolError(
            "upstream response id does not match the request",
            failure_class="upstream_id_mismatch",
            **located,
            expected_request_id=request_id,
            upstream_response_id=payload["id"],  # pyright: ignore[reportUnknownArgumentType]
        )
    return payload  # pyright: ignore[reportUnknownVariableType]


def _late() -> UpstreamTimeout:
    return UpstreamTimeout(
        "upstream did not finish its answer within request_timeout", failure_reason="timeout"
    )


async def within(deadline: float | None, answer: Any) -> Any:
    """Await ``answer`` (the send of a request) by ``deadline`` (loop time), else :class:`UpstreamTimeout`."""
    if deadline is None:
        return await answer
    try:
        with deadline_scope(deadline):
            return await answer
    except TimeoutError:
        raise _late() from None


async def messages_until(answer: MessageStream, deadline: float | None) -> AsyncIterator[UpstreamMessage]:
    """The answer's messages, ending in :class:`UpstreamTimeout` at ``deadline`` (loop time)."""
    messages = aiter(answer)
    if deadline is None:
        async with contextlib.aclosing(messages):  # pyright: ignore[reportArgumentType]
            async for message in messages:
                yield message
        return
    loop = asyncio.get_running_loop()
    async with contextlib.aclosing(messages):  # pyright: ignore[reportArgumentType]
        while True:
            # A flood always has the next message ready, so awaiting it never suspends and the
            # timeout below would never fire: the deadline is checked before every message too.
            if loop.time() >= deadline:
                raise _late()
            try:
                with deadline_scope(deadline):
                    message = await anext(messages)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _late() from None
            yield message


def relay_status(answer: StatusAnswer, request_id: RequestId, observe: ResponseObserver | None) -> Reply:
    """A request answered with a status alone: relayed with its body (a JSON-RPC error, a session
    that expired, an auth challenge)."""
    status = answer.status
    is_jsonrpc_error = is_jsonrpc_error_payload(answer.payload)
    if status >= 400:
        failure = UpstreamProtocolError(
            f"upstream answered HTTP {status}",
            failure_class="upstream_forward_error",
            upstream_http_status=status,
        )
        if observe:
            observe(answer.payload if is_jsonrpc_error else None, None if is_jsonrpc_error else failure)
        return JsonReply(status, answer.body, answer.headers, answer.payload)
    reason = "accepted without answering" if status == 202 else f"answered HTTP {status}"
    failure = UpstreamProtocolError(
        f"upstream {reason}",
        failure_class="upstream_forward_error" if status >= 300 else "upstream_invalid_jsonrpc",
        failure_reason="http_status",
        upstream_http_status=status,
    )
    if observe:
        observe(None, failure)
    return upstream_failure(request_id, failure)


async def relay_request(
    answer: Answer,
    request_id: RequestId,
    *,
    accepts_sse: bool,
    observe: ResponseObserver | None = None,
    deadline: float | None = None,
) -> Reply:
    """Build the agent's reply to a JSON-RPC request from the upstream's answer, read until
    ``deadline`` (event-loop time; ``None``: the transport's own timeouts only)."""
    if isinstance(answer, SingleAnswer):
        return await _relay_single(answer, request_id, observe, deadline)
    if isinstance(answer, StatusAnswer):
        return relay_status(answer, request_id, observe)
    if accepts_sse:
        return StreamReply(200, _relay_stream(answer, request_id, observe, deadline), answer.headers)
    return await _collapse(answer, request_id, observe, deadline)


async def send_and_read(sending: Awaitable[Answer]) -> tuple[Answer, UpstreamMessage | None]:
    """Await a request's send and, when the upstream answered with one message, read it too, so
    that one deadline scope (:func:`within`) covers both (a stream is read later, message by
    message, under :func:`messages_until`)."""
    answer = await sending
    if isinstance(answer, SingleAnswer):
        return answer, await answer.read()
    return answer, None


async def _relay_single(
    answer: SingleAnswer, request_id: RequestId, observe: ResponseObserver | None, deadline: float | None
) -> JsonReply:
    try:
        message = await within(deadline, answer.read())
    except UpstreamError as exc:
        if observe:
            observe(None, exc)
        return upstream_failure(request_id, exc)
    return relay_single(answer, message, request_id, observe)


def relay_single(
    answer: SingleAnswer, message: UpstreamMessage, request_id: RequestId, observe: ResponseObserver | None
) -> JsonReply:
    """The upstream answered with one message: it must be the response to the request."""
    try:
        payload = _check_response(message.payload, request_id, answer.detail)
    except UpstreamError as exc:
        if observe:
            observe(None, exc)
        return upstream_failure(request_id, exc)
    if observe:
        observe(payload, None)
    return JsonReply(200, message.raw, answer.headers, payload)


async def _relay_stream(
    answer: MessageStream, request_id: RequestId, observe: ResponseObserver | None, deadline: float | None
) -> AsyncIterator[UpstreamMessage]:
    answered = False
    resumable = False
    try:
        async for message in messages_until(answer, deadline):
            resumable = resumable or message.event_id is not None
            if not answered and message.answers(request_id):
                answered = True
                if observe:
                    observe(message.payload, None)
            yield message
    except UpstreamError as exc:
        if not answered:
            if observe:
                observe(None, exc)
            yield _failure_message(request_id, exc)
        return
    if not answered and not resumable:
        # A stream with event ids may be resumed by the client (GET + Last-Event-ID); otherwise
        # the response can never arrive and the client must not wait forever.
        failure = UpstreamProtocolError(
            "upstream closed the stream without answering the request", failure_reason="stream_ended"
        )
        if observe:
            observe(None, failure)
        yield _failure_message(request_id, failure)


async def _collapse(
    answer: MessageStream, request_id: RequestId, observe: ResponseObserver | None, deadline: float | None
) -> JsonReply:
    """For a client that only accepts JSON: wait for the response and return it alone (the
    messages before it cannot be delivered)."""
    try:
        async for message in messages_until(answer, deadline):
            if message.answers(request_id):
                if observe:
                    observe(message.payload, None)
                return JsonReply(200, message.raw, answer.headers, message.payload)
    except UpstreamError as exc:
        if observe:
            observe(None, exc)
        return upstream_failure(request_id, exc)
    failure = UpstreamProtocolError(
        "upstream closed the stream without answering the request", failure_reason="stream_ended"
    )
    if observe:
        observe(None, failure)
    return upstream_failure(request_id, failure)
