"""Tool baselines kept in the governance store, so a restart does not re-baseline.

:class:`DurableBaselineStore` is the :class:`~helio_proxy.policy.baselines.BaselineStore` the
proxy runs with. It holds one upstream's rows in memory: :meth:`~DurableBaselineStore.load` fills
it once at startup (off the event loop, before priming), every read is from memory, and every
write updates memory at once and is queued on the store's single writer. A write that fails is
logged; it never fails the ``tools/list`` or call that caused it.

Others change the table too: ``helio tools accept`` and, on PostgreSQL, other proxies.
:meth:`~DurableBaselineStore.refresh` takes their changes up (the proxy polls it, see
:mod:`helio_proxy.baselines.sync`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from functools import partial
from typing import Any

from helio_proxy.baselines.table import (
    insert_first_seen,
    load_fingerprints,
    load_tools,
    write_accepted,
    write_pending,
)
from helio_proxy.policy.baselines import PendingDrift, ToolBaseline
from helio_proxy.store.base import Job, Store

log = logging.getLogger("helio_proxy.baselines")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DurableBaselineStore:
    """One upstream's tool baselines in a :class:`~helio_proxy.store.base.Store`, held in memory."""

    def __init__(self, store: Store, upstream: str, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.store = store
        self.upstream = upstream
        """The ``upstream`` key of the rows (see :func:`~helio_proxy.baselines.table.baseline_key`)."""
        self._clock = clock
        self._baselines: dict[str, ToolBaseline] = {}
        self._pending: dict[str, PendingDrift] = {}
        # Writes are counted per tool so a refresh never takes up a row its read may have seen
        # before this proxy's own write to it committed. The writer thread settles them.
        self._lock = threading.Lock()
        self._queued: Counter[str] = Counter()
        self._unsettled: Counter[str] = Counter()

    async def load(self) -> int:
        """Read the upstream's rows into memory (replacing what was there); return how many."""
        rows = await self.store.read(load_tools(self.upstream))
        self._baselines = {row.name: row.baseline for row in rows}
        self._pending = {row.name: row.pending for row in rows if row.pending is not None}
        return len(rows)

    # -- BaselineStore ------------------------------------------------------------------------

    def get(self, name: str) -> ToolBaseline | None:
        return self._baselines.get(name)

    def pending(self) -> Mapping[str, PendingDrift]:
        return dict(self._pending)

    def add(self, baseline: ToolBaseline) -> None:
        if baseline.name in self._baselines:
            return
        self._baselines[baseline.name] = baseline
        self._write(baseline.name, insert_first_seen(self.upstream, baseline, self._clock()))

    def accept(self, baseline: ToolBaseline) -> None:
        self._baselines[baseline.name] = baseline
        self._pending.pop(baseline.name, None)
        self._write(baseline.name, write_accepted(self.upstream, baseline, self._clock()))

    def set_pending(self, name: str, drift: PendingDrift | None) -> None:
        baseline = self._baselines.get(name)
        if baseline is None:
            return
        if drift is None:
            self._pending.pop(name, None)
        else:
            self._pending[name] = drift
        self._write(name, write_pending(self.upstream, name, baseline.fingerprint, drift, self._clock()))

    def __len__(self) -> int:
        return len(self._baselines)

    # -- changes made by others ---------------------------------------------------------------

    async def refresh(self) -> list[str]:
        """Take up baselines changed in the store since they were read or written here; return
        the names of the tools whose baseline changed (for
        :meth:`~helio_proxy.policy.baselines.BaselineCache.rebase`).

        A tool this proxy has a write in flight for, or writes to during the refresh, is left to
        the next one: the read may predate the write.
        """
        with self._lock:
            queued = dict(self._queued)
            busy = {name for name, count in self._unsettled.items() if count}
        stored = await self.store.read(load_fingerprints(self.upstream))
        changed = {
            name
            for name, sha in stored.items()
            if name not in busy and (name not in self._baselines or self._baselines[name].fingerprint != sha)
        }
        if not changed:
            return []
        rows = await self.store.read(load_tools(self.upstream, changed))
        with self._lock:
            rows = [row for row in rows if self._queued.get(row.name, 0) == queued.get(row.name, 0)]
        for row in rows:
            self._baselines[row.name] = row.baseline
            if row.pending is None:
                self._pending.pop(row.name, None)
            else:
                self._pending[row.name] = row.pending
        return sorted(row.name for row in rows)

    # -- internals ----------------------------------------------------------------------------

    def _write(self, name: str, job: Job[None]) -> None:
        with self._lock:
            self._queued[name] += 1
            self._unsettled[name] += 1
        self.store.submit(job).add_done_callback(partial(self._settled, name))

    def _settled(self, name: str, future: Future[Any]) -> None:
        with self._lock:
            self._unsettled[name] -= 1
        error = None if future.cancelled() else future.exception()
        if error is not None:
            log.error("tool baseline of %r could not be stored: %s", name, error)
