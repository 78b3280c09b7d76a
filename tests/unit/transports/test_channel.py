"""MessageUpstream: per-session channels handing messages to the gateway, over an in-memory fake server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from helio_proxy.config.upstream import UpstreamConfig
from helio_proxy.errors import UpstreamError, UpstreamExited, UpstreamTimeout, UpstreamTooLarge
from helio_proxy.gateway.exchange import Answer, MessageStream, SingleAnswer, StatusAnswer
from helio_proxy.jsonrpc import Kind, dumps, parse
from helio_proxy.transports.upstream.channel import (
    Channel,
    ChannelEvents,
    ChannelState,
    MessageUpstream,
    RestartPolicy,
)

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class FakeServer:
    """A scripted MCP server: each connection gets a fresh instance (like a restarted child)."""

    def __init__(self, channel: FakeChannel) -> None:
        self.channel = channel
        self.received: list[dict[str, Any]] = []
        self.answers: dict[Any, asyncio.Future[dict[str, Any]]] = {}

    def send(self, message: dict[str, Any]) -> None:
        self.channel.deliver(dumps(message))

    async def handle(self, message: dict[str, Any]) -> None:
        self.received.append(message)
        method = message.get("method")
        if method is None:  # the client's answer to one of our requests
            self.answers[message["id"]].set_result(message)
            return
        if "id" not in message:
            return
        request_id = message["id"]
        params = message.get("params") or {}
        if method == "initialize":
            self.send({"jsonrpc": "2.0", "id": request_id, "result": {"serverInfo": {"name": "fake"}}})
        elif method == "echo":
            self.send({"jsonrpc": "2.0", "id": request_id, "result": params})
        elif method == "progress":
            token = params["_meta"]["progressToken"]
            for step in (1, 2):
                self.send(
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {"progressToken": token, "progress": step},
                    }
                )
            self.send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "log"}})
            self.send({"jsonrpc": "2.0", "id": request_id, "result": {"done": True}})
        elif method == "ask":
            self.answers["s1"] = asyncio.get_running_loop().create_future()
            self.send({"jsonrpc": "2.0", "id": "s1", "method": "elicitation/create", "params": {}})
            answer = await self.answers["s1"]
            self.send({"jsonrpc": "2.0", "id": request_id, "result": {"answer": answer["result"]}})
        elif method == "announce":
            self.send({"jsonrpc": "2.0", "id": request_id, "result": {}})
            self.send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        elif method == "flood":  # notifications, never the response
            for n in range(100):
                self.send(
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/message",
                        "params": {"data": "x" * 80, "n": n},
                    }
                )
        elif method == "oversized":  # a line the transport could not read
            self.channel.events.on_oversized(1024)
        elif method == "die":
            self.channel.connection_lost(UpstreamExited("child exited (code 1)", failure_reason="exited"))
        # "hang": never answers


class FakeChannel(Channel):
    connects: int = 0

    def __init__(self, events: ChannelEvents, *, fail_connect: Callable[[int], bool], **kwargs: Any) -> None:
        super().__init__(events, **kwargs)
        self.server: FakeServer | None = None
        self.fail_connect = fail_connect
        self.servers: list[FakeServer] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def _connect(self) -> None:
        FakeChannel.connects += 1
        if self.fail_connect(FakeChannel.connects):
            raise UpstreamExited("cannot start", failure_reason="spawn_failed")
        self.server = FakeServer(self)
        self.servers.append(self.server)

    async def _write(self, data: bytes) -> None:
        if self.server is None:
            raise BrokenPipeError
        task = asyncio.create_task(self.server.handle(json.loads(data)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disconnect(self) -> None:
        self.server = None


class FakeUpstream(MessageUpstream):
    def __init__(self, *, fail_connect: Callable[[int], bool] = lambda n: False, **kwargs: Any) -> None:
        config = UpstreamConfig(url="stdio://fake", transport="stdio", command="fake", request_timeout="2s")
        super().__init__(config, **kwargs)
        self.fail_connect = fail_connect
        self.channels: list[FakeChannel] = []

    def open_channel(self, events: ChannelEvents) -> Channel:
        channel = FakeChannel(
            events,
            fail_connect=self.fail_connect,
            label=self.label,
            policy=self.policy,
            ready_timeout=self.connect_timeout,
            clock=self.clock,
            sleep=self.sleep,
        )
        self.channels.append(channel)
        return channel


async def _no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


def _upstream(**kwargs: Any) -> FakeUpstream:
    FakeChannel.connects = 0
    kwargs.setdefault("sleep", _no_sleep)
    return FakeUpstream(**kwargs)


async def _post(upstream: MessageUpstream, headers: dict[str, str], body: bytes) -> Answer:
    """What the gateway does with a client's message: a request is sent, anything else notified."""
    message = parse(body)
    if message.kind is Kind.REQUEST:
        return await upstream.send(message, headers)
    return await upstream.notify(message, headers)


def _status(answer: Answer) -> int:
    return answer.status if isinstance(answer, StatusAnswer) else 200


async def _messages(answer: Answer) -> list[dict[str, Any]]:
    assert isinstance(answer, MessageStream)
    return [message.payload async for message in answer]


async def _read(answer: Answer) -> bytes:
    if isinstance(answer, StatusAnswer):
        return answer.body
    if isinstance(answer, SingleAnswer):
        return (await answer.read()).raw
    return b"".join([message.raw async for message in answer])


async def _session(upstream: MessageUpstream) -> dict[str, str]:
    answer = await _post(upstream, {}, dumps(INIT))
    assert isinstance(answer, SingleAnswer)
    await _read(answer)
    headers = {"mcp-session-id": answer.headers["mcp-session-id"]}
    assert _status(await _post(upstream, headers, dumps(INITIALIZED))) == 202
    return headers


def _call(request_id: Any, method: str, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return dumps(message)


async def test_initialize_mints_a_session_and_a_plain_answer_is_json() -> None:
    upstream = _upstream()
    headers = await _session(upstream)
    assert len(headers["mcp-session-id"]) >= 32
    answer = await _post(upstream, headers, _call(1, "echo", {"x": 1}))
    assert isinstance(answer, SingleAnswer)
    assert answer.headers["mcp-session-id"] == headers["mcp-session-id"]
    assert json.loads(await _read(answer)) == {"jsonrpc": "2.0", "id": 1, "result": {"x": 1}}
    await upstream.close()


async def test_a_request_streams_its_progress_and_the_messages_sent_while_it_runs_then_its_response() -> None:
    upstream = _upstream()
    headers = await _session(upstream)
    answer = await _post(upstream, headers, _call("r", "progress", {"_meta": {"progressToken": "t"}}))
    assert isinstance(answer, MessageStream)
    messages = await _messages(answer)
    assert [m.get("method") or m["id"] for m in messages] == [
        "notifications/progress",
        "notifications/progress",
        "notifications/message",
        "r",
    ]
    await upstream.close()


async def test_a_server_request_is_answered_by_the_client_posting_its_response() -> None:
    upstream = _upstream()
    headers = await _session(upstream)
    answer = await _post(upstream, headers, _call(5, "ask"))
    assert isinstance(answer, MessageStream)
    messages = aiter(answer)
    asked = (await anext(messages)).payload
    assert asked["method"] == "elicitation/create"
    reply = await _post(upstream, headers, dumps({"jsonrpc": "2.0", "id": asked["id"], "result": {"ok": 1}}))
    assert _status(reply) == 202
    response = (await anext(messages)).payload
    assert response == {"jsonrpc": "2.0", "id": 5, "result": {"answer": {"ok": 1}}}
    await upstream.close()


async def test_sessions_are_isolated_and_unattributed_messages_reach_their_own_get_stream() -> None:
    upstream = _upstream()
    first, second = await _session(upstream), await _session(upstream)
    assert first != second
    assert len(upstream.channels) == 2  # one connection (child) per session
    stream = await upstream.listen(second)
    assert isinstance(stream, MessageStream)
    await _read(await _post(upstream, first, _call(1, "announce")))  # kept for first's stream
    await _read(await _post(upstream, second, _call(1, "announce")))
    messages = aiter(stream)
    assert (await anext(messages)).payload["method"] == "notifications/tools/list_changed"
    await messages.aclose()  # pyright: ignore[reportAttributeAccessIssue]
    kept = await upstream.listen(first)
    assert isinstance(kept, MessageStream)
    assert (await anext(aiter(kept))).payload["method"] == "notifications/tools/list_changed"
    assert _status(await upstream.listen(first)) == 409
    await upstream.close()


async def test_missing_session_is_400_and_unknown_or_deleted_session_is_404() -> None:
    """Spec (streamable HTTP, session management): 400 without a session id, 404 for an unknown one."""
    upstream = _upstream()
    missing = await _post(upstream, {}, _call(1, "echo"))
    assert _status(missing) == 400
    assert b"session" in (await _read(missing)).lower()
    unknown = await _post(upstream, {"mcp-session-id": "nope"}, _call(1, "echo"))
    assert _status(unknown) == 404
    assert json.loads(await _read(unknown))["error"]["code"] == -32600
    headers = await _session(upstream)
    assert (await upstream.end_session(headers)).status == 200
    assert _status(await _post(upstream, headers, _call(2, "echo"))) == 404
    await upstream.close()  # waits for the deleted session's channel to stop
    assert upstream.channels[0].state is ChannelState.STOPPED


async def test_a_lost_channel_fails_requests_in_flight_then_restarts_and_replays_initialize() -> None:
    upstream = _upstream()
    headers = await _session(upstream)
    hanging = await _post(upstream, headers, _call(1, "progress", {"_meta": {"progressToken": 9}}))
    with pytest.raises(UpstreamExited) as exited:
        await _post(upstream, headers, _call(2, "die"))
    assert exited.value.failure_class == "upstream_exited"
    assert exited.value.data["failure_reason"] == "exited"
    assert exited.value.delivered
    await _read(hanging)  # the progress call finished before the death
    answer = await _post(upstream, headers, _call(3, "echo", {"after": "restart"}))
    assert json.loads(await _read(answer))["result"] == {"after": "restart"}
    channel = upstream.channels[0]
    assert channel.restarts == 1
    fresh = channel.servers[-1].received
    assert [m.get("method") for m in fresh] == ["initialize", "notifications/initialized", "echo"]
    assert str(fresh[0]["id"]).startswith("helio-replay-")
    await upstream.close()


async def test_a_request_in_flight_gets_upstream_exited_when_the_channel_dies() -> None:
    upstream = _upstream()
    headers = await _session(upstream)
    pending = asyncio.ensure_future(_post(upstream, headers, _call(1, "hang")))
    await asyncio.sleep(0.01)
    assert upstream.channels[0].server is not None
    upstream.channels[0].connection_lost(UpstreamExited("child exited", failure_reason="exited"))
    with pytest.raises(UpstreamExited):
        await pending
    await upstream.close()


async def test_after_the_restart_policy_gives_up_sends_fail_as_not_running_and_undelivered() -> None:
    stopped: list[str] = []
    upstream = _upstream(fail_connect=lambda n: n > 1, policy=RestartPolicy(retries=3, base_delay=0.0))
    upstream.on_stopped = lambda _session, reason: stopped.append(reason)
    headers = await _session(upstream)
    with pytest.raises(UpstreamExited):
        await _post(upstream, headers, _call(1, "die"))
    with pytest.raises(UpstreamExited) as down:
        await _post(upstream, headers, _call(2, "echo"))
    assert down.value.data["failure_reason"] == "not_running"
    assert not down.value.delivered
    assert FakeChannel.connects == 4  # the first start and three attempts
    assert upstream.channels[0].state is ChannelState.STOPPED
    assert stopped
    assert "gave up after 3" in stopped[0]
    await upstream.close()


async def test_the_attempt_count_resets_after_a_healthy_period() -> None:
    now = [0.0]
    upstream = _upstream(
        policy=RestartPolicy(retries=1, base_delay=0.0, healthy_after=10), clock=lambda: now[0]
    )
    headers = await _session(upstream)
    for request_id in (1, 2):
        now[0] += 11  # up long enough to count as healthy before each death
        with pytest.raises(UpstreamExited):
            await _post(upstream, headers, _call(request_id, "die"))
        answer = await _post(upstream, headers, _call(request_id + 10, "echo", {}))
        assert _status(answer) == 200
        await _read(answer)
    assert upstream.channels[0].restarts == 2
    with pytest.raises(UpstreamExited):
        await _post(upstream, headers, _call(3, "die"))  # no healthy period: the one retry is spent
    with pytest.raises(UpstreamExited) as down:
        await _post(upstream, headers, _call(4, "echo", {}))
    assert down.value.data["failure_reason"] == "not_running"
    await upstream.close()


async def test_silence_past_request_timeout_is_a_timeout() -> None:
    upstream = _upstream()
    upstream.request_timeout = 0.05
    headers = await _session(upstream)
    with pytest.raises(UpstreamTimeout):
        await _post(upstream, headers, _call(1, "hang"))
    await upstream.close()


async def test_a_flood_of_notifications_past_max_response_bytes_ends_the_answer_response_too_large() -> None:
    upstream = _upstream()
    upstream.max_response_bytes = 2000
    headers = await _session(upstream)
    answer = await _post(upstream, headers, _call(1, "flood"))
    with pytest.raises(UpstreamTooLarge) as too_large:
        await _messages(answer)
    assert too_large.value.failure_class == "response_too_large"
    assert too_large.value.data == {"failure_reason": "max_response_bytes", "max_response_bytes": 2000}
    # The session carries on: later messages are unattributed and kept (bounded), not queued for it.
    assert _status(await _post(upstream, headers, _call(2, "echo", {"ok": True}))) == 200
    await upstream.close()


async def test_an_unreadable_line_fails_the_only_request_in_flight_response_too_large() -> None:
    upstream = _upstream()
    headers = await _session(upstream)
    with pytest.raises(UpstreamTooLarge) as too_large:
        await _post(upstream, headers, _call(1, "oversized"))
    assert too_large.value.data["max_response_bytes"] == 1024
    await upstream.close()


async def test_idle_sessions_expire_and_close_their_channel() -> None:
    now = [0.0]
    upstream = _upstream(clock=lambda: now[0], idle_seconds=100)
    headers = await _session(upstream)
    now[0] = 99
    assert await upstream.expire_idle() == []
    now[0] = 200
    assert await upstream.expire_idle() == [headers["mcp-session-id"]]
    assert upstream.channels[0].state is ChannelState.STOPPED
    assert _status(await _post(upstream, headers, _call(1, "echo"))) == 404
    await upstream.close()


async def test_a_channel_that_cannot_start_fails_initialize_and_leaves_no_session() -> None:
    upstream = _upstream(fail_connect=lambda n: True)
    with pytest.raises(UpstreamExited) as failed:
        await _post(upstream, {}, dumps(INIT))
    assert not failed.value.delivered
    assert upstream.sessions == {}


async def test_too_many_sessions_answer_503() -> None:
    upstream = _upstream(max_sessions=1)
    await _session(upstream)
    assert _status(await _post(upstream, {}, dumps(INIT))) == 503
    await upstream.close()


async def test_a_cancelled_request_ends_its_answer_and_the_late_response_is_dropped() -> None:
    """Spec (cancellation): the receiver SHOULD NOT answer a cancelled request; the sender ignores late answers."""
    upstream = _upstream()
    headers = await _session(upstream)
    pending = asyncio.ensure_future(_post(upstream, headers, _call(1, "hang")))
    await asyncio.sleep(0.01)
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    assert _status(await _post(upstream, headers, dumps(cancel))) == 202
    with pytest.raises(UpstreamError) as cancelled:
        await pending
    assert cancelled.value.data["failure_reason"] == "cancelled"
    upstream.channels[0].deliver(dumps({"jsonrpc": "2.0", "id": 1, "result": {}}))  # late: dropped
    answer = await _post(upstream, headers, _call(1, "echo", {"again": True}))
    assert json.loads(await _read(answer))["result"] == {"again": True}
    await upstream.close()


async def test_a_cancelled_initialize_leaves_no_session_and_closes_its_channel() -> None:
    upstream = _upstream()
    upstream_post = asyncio.ensure_future(_post(upstream, {}, dumps(INIT)))
    await asyncio.sleep(0)  # the channel is open and initialize is written; its answer not yet read
    assert len(upstream.channels) == 1
    upstream_post.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upstream_post
    assert upstream.sessions == {}
    await upstream.close()
    assert upstream.channels[0].state is ChannelState.STOPPED
