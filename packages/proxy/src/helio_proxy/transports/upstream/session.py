"""One downstream session on a message-based upstream: routes the server's messages.

Every server message goes to exactly one place: a response to the request with its id; a
progress notification to the request whose ``progressToken`` it carries; anything else to the
only request in flight, or else to the session's ``GET`` stream, or else (no stream open) to the
oldest request in flight, or else into a bounded backlog that the next ``GET`` stream receives.

Memory stays bounded whatever the server sends: a request's answer (all its messages) may hold at
most ``max_response_bytes`` before it fails with ``failure_class: response_too_large``; a ``GET``
stream whose client does not keep up holds at most ``backlog`` messages (newer ones are dropped).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, cast

from helio_proxy.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout, UpstreamTooLarge
from helio_proxy.gateway.exchange import UpstreamMessage
from helio_proxy.jsonrpc import RequestId, dumps
from helio_proxy.transports.upstream.supervised import Channel, not_running

log = logging.getLogger("helio_proxy.upstream")

DROP_LOG_SECONDS: Final = 10.0
"""Dropped server messages are logged at most this often per session (with a running count)."""


class SessionOwner(Protocol):
    """What a session needs of the upstream that owns it (:class:`~.channel.MessageUpstream`);
    a protocol here, so ``session`` does not import ``channel`` (which imports it)."""

    backlog: int
    max_response_bytes: int
    clock: Callable[[], float]

    @property
    def label(self) -> str: ...

    def stopped(self, session: MessageSession, reason: str) -> None: ...


_Key = tuple[bool, str | int]
"""A JSON-RPC id or progress token as a dict key (``1`` and ``"1"`` are different)."""

_Item = tuple[UpstreamMessage, bool] | UpstreamError
"""What a request's queue carries: (message, is its response), or the failure that ended it."""


def _key(value: Any) -> _Key | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return (isinstance(value, str), value)


class Pending:
    """One request in flight: the server messages that belong to it, in order."""

    __slots__ = ("key", "queue", "received", "token")

    def __init__(self, key: _Key, token: _Key | None) -> None:
        self.key = key
        self.token = token
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.received = 0
        """Bytes of server messages routed to this request so far."""

    async def next(self, within: float) -> tuple[UpstreamMessage, bool]:
        try:
            async with asyncio.timeout(within):
                item = await self.queue.get()
        except TimeoutError:
            raise UpstreamTimeout(
                "upstream stayed silent for longer than request_timeout", failure_reason="timeout"
            ) from None
        if isinstance(item, UpstreamError):
            raise item
        return item


class MessageSession:
    """One downstream session and its own upstream channel; routes the server's messages."""

    def __init__(self, session_id: str, upstream: SessionOwner) -> None:
        self.id = session_id
        self.upstream = upstream
        self.channel: Channel | None = None
        self.last_active = upstream.clock()
        self.ended = False
        self._requests: dict[_Key, Pending] = {}
        self._tokens: dict[_Key, Pending] = {}
        self._stream: asyncio.Queue[UpstreamMessage | None] | None = None
        self._backlog: deque[UpstreamMessage] = deque(maxlen=upstream.backlog)
        self._handshake: bytes | None = None
        self._initialized_sent = False
        self._internal: dict[_Key, asyncio.Future[dict[str, Any]]] = {}
        self._replays = itertools.count(1)
        self._drops = 0
        self._drop_logged = float("-inf")

    @property
    def label(self) -> str:
        return self.upstream.label

    @property
    def idle(self) -> bool:
        return not self._requests and self._stream is None

    # -- client → server ---------------------------------------------------------------------

    async def send(self, raw: bytes) -> None:
        self.last_active = self.upstream.clock()
        if self.channel is None:
            raise not_running(f"upstream {self.label}")
        await self.channel.send(raw)

    def begin(self, request_id: RequestId, params: Mapping[str, Any] | None) -> Pending:
        key = _key(request_id)
        assert key is not None
        if key in self._requests:
            raise UpstreamProtocolError(
                f"request id {request_id!r} is already in flight in this session",
                failure_reason="duplicate_request_id",
            )
        meta = params.get("_meta") if params else None
        token = _key(cast(dict[str, Any], meta).get("progressToken")) if isinstance(meta, dict) else None
        pending = Pending(key, token)
        self._requests[key] = pending
        if token is not None:
            self._tokens.setdefault(token, pending)
        return pending

    def forget(self, pending: Pending) -> None:
        if self._requests.get(pending.key) is pending:
            del self._requests[pending.key]
        if pending.token is not None and self._tokens.get(pending.token) is pending:
            del self._tokens[pending.token]

    def cancel(self, request_id: Any) -> None:
        """The client cancelled a request: its answer ends now (the server need not respond)."""
        key = _key(request_id)
        pending = self._requests.pop(key, None) if key is not None else None
        if pending is None:
            return
        if pending.token is not None and self._tokens.get(pending.token) is pending:
            del self._tokens[pending.token]
        pending.queue.put_nowait(
            UpstreamError("the client cancelled the request", failure_reason="cancelled")
        )

    def note_handshake(self, raw: bytes) -> None:
        """The client's ``initialize`` (replayed on a reconnected channel)."""
        self._handshake = raw

    def note_initialized(self) -> None:
        self._initialized_sent = True

    # -- server → client ---------------------------------------------------------------------

    def on_message(self, raw: bytes) -> None:
        self.last_active = self.upstream.clock()
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("[%s] dropped a line that is not JSON: %.200r", self.label, raw)
            return
        if not isinstance(payload, dict):
            log.warning("[%s] dropped a message that is not a JSON object: %.200r", self.label, raw)
            return
        message = cast(dict[str, Any], payload)
        received = UpstreamMessage(raw, payload=message)  # parsed here, once
        if "method" not in message and ("result" in message or "error" in message):
            self._on_response(received, message)
            return
        if message.get("method") == "notifications/progress":
            params = message.get("params")
            token = (
                _key(cast(dict[str, Any], params).get("progressToken")) if isinstance(params, dict) else None
            )
            pending = self._tokens.get(token) if token is not None else None
            if pending is not None:
                self._route(pending, received, False)
                return
        self._unattributed(received)

    def _route(self, pending: Pending, raw: UpstreamMessage, is_response: bool) -> None:
        """Queue a message for ``pending``, failing it instead once its answer passes the size cap."""
        pending.received += len(raw.raw)
        limit = self.upstream.max_response_bytes
        if pending.received > limit:
            self.forget(pending)
            pending.queue.put_nowait(UpstreamTooLarge(limit))
            return
        pending.queue.put_nowait((raw, is_response))

    def on_oversized(self, limit: int) -> None:
        """The server sent one message larger than the transport reads: it belongs to the only
        request in flight, if there is one (which then fails); otherwise it is only logged."""
        pending = list(self._requests.values())
        if len(pending) == 1:
            self.forget(pending[0])
            pending[0].queue.put_nowait(UpstreamTooLarge(limit, "message"))
        else:
            log.warning("[%s] dropped a message longer than %d bytes", self.label, limit)

    def _on_response(self, raw: UpstreamMessage, message: dict[str, Any]) -> None:
        key = _key(message.get("id"))
        if key is None:
            log.warning("[%s] dropped a response without a usable id: %.200r", self.label, raw.raw)
            return
        internal = self._internal.pop(key, None)
        if internal is not None:
            if not internal.done():
                internal.set_result(message)
            return
        pending = self._requests.pop(key, None)
        if pending is None:
            log.debug("[%s] dropped a response to %r: nobody waits for it", self.label, key[1])
            return
        if pending.token is not None and self._tokens.get(pending.token) is pending:
            del self._tokens[pending.token]
        self._route(pending, raw, True)

    def _unattributed(self, raw: UpstreamMessage) -> None:
        pending = list(self._requests.values())
        if len(pending) == 1:
            self._route(pending[0], raw, False)
        elif self._stream is not None:
            if self._stream.qsize() >= self.upstream.backlog:
                self._dropped("the client's stream is not keeping up: dropped server messages")
                return
            self._stream.put_nowait(raw)
        elif pending:
            self._route(pending[0], raw, False)
        else:
            if len(self._backlog) == self._backlog.maxlen:
                self._dropped("no client stream open: dropped the oldest kept server messages")
            self._backlog.append(raw)

    def _dropped(self, what: str) -> None:
        """Count a dropped server message; log at most every :data:`DROP_LOG_SECONDS` (a flooding
        server must not flood the log too)."""
        self._drops += 1
        now = self.upstream.clock()
        if now - self._drop_logged >= DROP_LOG_SECONDS:
            log.warning("[%s] %s (%d so far in this session)", self.label, what, self._drops)
            self._drop_logged = now

    def on_lost(self, error: UpstreamError) -> None:
        self._fail_all(error)

    def on_stopped(self, reason: str) -> None:
        self.upstream.stopped(self, reason)

    async def on_reconnected(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        if self._handshake is None:
            return
        message = json.loads(self._handshake)
        request_id = f"helio-replay-{self.id[:8]}-{next(self._replays)}"
        message["id"] = request_id
        key = _key(request_id)
        assert key is not None
        answered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._internal[key] = answered
        try:
            await send(dumps(message))
            answer = await answered
        finally:
            self._internal.pop(key, None)
        if "error" in answer:
            raise UpstreamProtocolError(
                f"the restarted upstream refused initialize: {json.dumps(answer['error'])[:200]}"
            )
        if self._initialized_sent:
            await send(dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))

    def _fail_all(self, error: UpstreamError) -> None:
        for pending in self._requests.values():
            pending.queue.put_nowait(error)
        self._requests.clear()
        self._tokens.clear()

    # -- the GET stream ----------------------------------------------------------------------

    def attach_stream(self) -> asyncio.Queue[UpstreamMessage | None] | None:
        """The session's one standalone stream, with the kept backlog (``None``: one is open)."""
        if self._stream is not None:
            return None
        stream: asyncio.Queue[UpstreamMessage | None] = asyncio.Queue()
        while self._backlog:
            stream.put_nowait(self._backlog.popleft())
        self._stream = stream
        return stream

    def detach_stream(self, stream: asyncio.Queue[UpstreamMessage | None]) -> None:
        if self._stream is stream:
            self._stream = None
        while not stream.empty():  # what the client did not get is kept for the next stream
            item = stream.get_nowait()
            if item is not None:
                self._backlog.append(item)

    async def end(self, error: UpstreamError) -> None:
        """Close the channel; fail what is in flight; end the GET stream."""
        if self.ended:
            return
        self.ended = True
        self._fail_all(error)
        if self._stream is not None:
            self._stream.put_nowait(None)
        if self.channel is not None:
            await self.channel.close()
