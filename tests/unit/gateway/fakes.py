"""Fakes the gateway unit tests share: a record sink and an upstream that answers every call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from helio_proxy.audit.records import AnyRecord, ToolCallRecord
from helio_proxy.gateway.exchange import MessageStream, SingleAnswer, StatusAnswer, UpstreamMessage
from helio_proxy.jsonrpc import Message


class Sink:
    """Keeps the tool-call records submitted, in order."""

    def __init__(self) -> None:
        self.records: list[ToolCallRecord] = []

    def submit(self, record: AnyRecord) -> asyncio.Future[bool] | None:
        assert isinstance(record, ToolCallRecord)
        self.records.append(record)
        return None


class EchoUpstream:
    """Answers every request with an ``ok`` result; counts the requests sent."""

    def __init__(self) -> None:
        self.calls = 0

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, message: Message, client_headers: Mapping[str, str]) -> SingleAnswer:
        self.calls += 1
        result = {"content": [{"type": "text", "text": "ok"}], "isError": False}
        body = json.dumps({"jsonrpc": "2.0", "id": message.id, "result": result}).encode()
        return SingleAnswer.of(UpstreamMessage(body))

    async def notify(self, message: Message, client_headers: Mapping[str, str]) -> StatusAnswer:
        return StatusAnswer(202)

    async def listen(self, client_headers: Mapping[str, str]) -> MessageStream | StatusAnswer:
        raise NotImplementedError

    async def end_session(self, client_headers: Mapping[str, str]) -> StatusAnswer:
        raise NotImplementedError
