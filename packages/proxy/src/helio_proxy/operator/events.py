"""Live operator events (``GET /api/events``): approvals, limits, budgets, calls.

Components publish ``(type, data)``; every connected dashboard gets each event once, in order,
as one SSE event with an ``id:`` line. The stream is live only (no replay). A subscriber that
falls :data:`QUEUE_LIMIT` events behind is disconnected rather than allowed to grow memory
without bound; its client reconnects and reloads state from the REST endpoints.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger("helio_proxy.operator.events")

QUEUE_LIMIT: Final = 1000

EVENT_TYPES: Final = (
    "heartbeat",
    "action",
    "approval_requested",
    "approval_resolved",
    "approval_notification_failed",
    "limit_warning",
    "budget_update",
    "budget_breached",
    "kill_switch",
)
"""Every event type the operator stream carries."""


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str
    data: dict[str, Any]
    timestamp: float

    def sse(self) -> bytes:
        body = json.dumps({"type": self.type, "timestamp": self.timestamp, "data": self.data}, default=str)
        return f"id: {self.id}\nevent: {self.type}\ndata: {body}\n\n".encode()


class _Closed:
    pass


_CLOSED: Final = _Closed()


class EventBus:
    """Fan-out of operator events to every ``/api/events`` subscriber."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._subscribers: set[asyncio.Queue[Event | _Closed]] = set()
        self.published: int = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, type: str, data: dict[str, Any]) -> Event:
        """Send an event to every subscriber now (never blocks; call from the event loop)."""
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown operator event type {type!r}")
        event = Event(next(self._ids), type, data, time.time())
        self.published += 1
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("an /api/events subscriber fell %d events behind; disconnecting it", QUEUE_LIMIT)
                self._subscribers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(_CLOSED)
        return event

    def subscribe(self, heartbeat: float) -> AsyncIterator[Event]:
        """Events from now on, with a ``heartbeat`` event after every ``heartbeat`` seconds of quiet.

        The subscriber counts from this call, not from the first iteration: ``/api/events``
        subscribes before its response starts, so an event published while the response's head
        is on its way is not lost (a console that loads a screen's list and then opens the
        stream reloads the list once the stream is open; anything published in between reaches
        it one way or the other)."""
        queue: asyncio.Queue[Event | _Closed] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        return self._drain(queue, heartbeat)

    async def _drain(self, queue: asyncio.Queue[Event | _Closed], heartbeat: float) -> AsyncIterator[Event]:
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), heartbeat)
                except TimeoutError:
                    yield Event(next(self._ids), "heartbeat", {}, time.time())
                    continue
                if isinstance(item, _Closed):
                    return
                yield item
        finally:
            self._subscribers.discard(queue)

    def close_all(self) -> None:
        """End every subscription (shutdown)."""
        for queue in list(self._subscribers):
            self._subscribers.discard(queue)
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(_CLOSED)
