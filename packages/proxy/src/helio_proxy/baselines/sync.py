"""Picking up baselines accepted outside the running proxy.

``helio tools accept`` writes the table from another process; a running proxy sees it by polling
every :data:`BASELINE_POLL_SECONDS`. An acceptance through this proxy's own operator API
(``POST /api/tools/{name}/accept``) does not wait for the poll: the route runs
:meth:`BaselineSync.sync_once` of the upstream's mount before it answers. A poll is one small indexed query on the store's reader
pool (tool name and fingerprint of one upstream's rows, a few dozen short rows), off the event
loop; only the rows whose fingerprint changed are read in full. Waiting for the next tool
revalidation instead would take minutes (``tool_revalidation.interval``, 5m by default) and an
upstream round trip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from helio_proxy.baselines.durable import DurableBaselineStore
from helio_proxy.policy.baselines import BaselineCache, DriftEvent

log = logging.getLogger("helio_proxy.baselines")

BASELINE_POLL_SECONDS: Final = 2.0
"""How often a running proxy looks for baselines changed in the store (``helio tools accept``,
another proxy on the same database): an acceptance lifts a drift block within about this long."""


class BaselineSync:
    """Polls a :class:`DurableBaselineStore` and re-judges tools whose baseline changed."""

    def __init__(
        self,
        store: DurableBaselineStore,
        cache: BaselineCache,
        *,
        on_drift: Callable[[list[DriftEvent]], None] = lambda _events: None,
        interval: float = BASELINE_POLL_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.cache = cache
        self.on_drift = on_drift
        self.interval = interval
        self._sleep = sleep
        self._failing = False
        # The poll and an acceptance made through this proxy's operator API (which syncs at once)
        # must not both take up the same change.
        self._serial = asyncio.Lock()

    async def sync_once(self) -> list[DriftEvent]:
        """One poll: the drift events it caused (``tool_drift_accepted`` for an acceptance)."""
        events: list[DriftEvent] = []
        async with self._serial:
            for name in await self.store.refresh():
                event = self.cache.rebase(name)
                if event is not None:
                    events.append(event)
        if events:
            self.on_drift(events)
        return events

    async def run(self) -> None:
        """Poll every ``interval`` seconds until cancelled; a failed poll is logged and retried."""
        while True:
            await self._sleep(self.interval)
            try:
                await self.sync_once()
            except Exception as exc:  # the store may be briefly unreachable; keep polling
                if not self._failing:
                    log.warning("tool baselines could not be read from the store: %s", exc)
                self._failing = True
            else:
                if self._failing:
                    log.warning("tool baselines are readable from the store again")
                self._failing = False
