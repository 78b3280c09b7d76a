"""A stream reply frees its request id in the session however the stream ends."""

from __future__ import annotations

import gc
from collections.abc import AsyncGenerator

from helio_proxy.gateway.exchange import UpstreamMessage
from helio_proxy.gateway.pipeline import _Releasing  # pyright: ignore[reportPrivateUsage]
from helio_proxy.jsonrpc import RequestId


async def _chunks() -> AsyncGenerator[UpstreamMessage]:
    yield UpstreamMessage(b"one")
    yield UpstreamMessage(b"two")


async def test_read_to_the_end_frees_the_id() -> None:
    in_flight: set[tuple[str, RequestId]] = {("s", 1)}
    stream = _Releasing(_chunks(), in_flight, ("s", 1))
    assert [message.raw async for message in stream] == [b"one", b"two"]
    assert in_flight == set()


async def test_closed_early_frees_the_id() -> None:
    in_flight: set[tuple[str, RequestId]] = {("s", 1), ("s", 2)}
    stream = _Releasing(_chunks(), in_flight, ("s", 1))
    assert (await anext(stream)).raw == b"one"
    assert in_flight == {("s", 1), ("s", 2)}
    await stream.aclose()
    assert in_flight == {("s", 2)}


async def test_dropped_unread_frees_the_id_when_collected() -> None:
    in_flight: set[tuple[str, RequestId]] = {("s", "x")}
    chunks = _chunks()
    stream = _Releasing(chunks, in_flight, ("s", "x"))
    del stream
    gc.collect()
    assert in_flight == set()
    await chunks.aclose()
