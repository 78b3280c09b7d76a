"""The operator event bus: a subscriber counts from the moment it subscribes."""

from __future__ import annotations

import asyncio

from helio_proxy.operator.events import EventBus


async def test_an_event_published_before_the_stream_is_read_still_reaches_it() -> None:
    """``/api/events`` subscribes before its response starts; an event published while the
    response's head is on its way (a ticket opened right after the console fetched its list)
    reaches the stream once it is read, instead of being lost."""
    bus = EventBus()
    events = bus.subscribe(heartbeat=5.0)
    assert bus.subscribers == 1  # registered at once, not at the first read
    bus.publish("approval_requested", {"id": "t1"})
    first = await asyncio.wait_for(anext(events), 1.0)  # pyright: ignore[reportArgumentType]
    assert (first.type, first.data) == ("approval_requested", {"id": "t1"})
    await events.aclose()  # pyright: ignore[reportAttributeAccessIssue]
    assert bus.subscribers == 0
