"""An SSE answer the proxy writes gets a keep-alive comment while its messages are slow to come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from helio_proxy.gateway.exchange import StreamReply, UpstreamMessage
from helio_proxy.transports.downstream import asgi


async def _slow_messages() -> AsyncGenerator[UpstreamMessage]:
    await asyncio.sleep(0.35)
    yield UpstreamMessage(b'{"jsonrpc":"2.0","id":1,"result":{}}', event_id="e1")


async def test_an_idle_stream_gets_a_comment_each_heartbeat_and_then_its_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(asgi, "STREAM_HEARTBEAT_SECONDS", 0.1)
    sent: list[dict[str, Any]] = []
    never = asyncio.Event()

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async def receive() -> Any:
        await never.wait()
        return {"type": "http.disconnect"}

    await asgi.send_reply(send, receive, StreamReply(200, _slow_messages()))
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert bodies[0] == bodies[1] == bodies[2] == asgi.HEARTBEAT  # 0.1, 0.2, 0.3 s
    assert bodies[-2] == b'event: message\nid: e1\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n'
    assert bodies[-1] == b""
    assert sent[-1]["more_body"] is False


async def test_a_stream_that_keeps_sending_gets_no_comment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi, "STREAM_HEARTBEAT_SECONDS", 0.2)
    sent: list[bytes] = []
    never = asyncio.Event()

    async def busy() -> AsyncGenerator[UpstreamMessage]:
        for n in range(8):
            await asyncio.sleep(0.05)
            yield UpstreamMessage(
                b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"n":%d}}' % n
            )

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])

    async def receive() -> Any:
        await never.wait()
        return {"type": "http.disconnect"}

    await asgi.send_reply(send, receive, StreamReply(200, busy()))
    assert asgi.HEARTBEAT not in sent
    assert len(sent) == 9
