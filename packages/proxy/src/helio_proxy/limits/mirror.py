"""This proxy's local view of its buckets, for answers that cannot wait on the store (dry runs).

It is refreshed from the store whenever a call is charged (the ledger returns what each bucket
held) and loaded at startup; charges other replicas made since this proxy last touched a bucket
are not in it. Enforcement never reads it: every charge is decided by the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from helio_proxy.limits.charges import Charge
from helio_proxy.limits.ledger import BucketView
from helio_proxy.limits.windows import EMPTY, Usage, live, usage_of


class Mirror:
    def __init__(self) -> None:
        self._views: dict[str, BucketView] = {}

    def __len__(self) -> int:
        return len(self._views)

    def put(self, views: Iterable[BucketView]) -> None:
        for view in views:
            self._views[view.bucket.key] = view

    def drop(self, key: str, entry_id: str) -> None:
        """A released charge no longer counts."""
        view = self._views.get(key)
        if view is not None:
            self._views[key] = replace(view, entries=tuple(e for e in view.entries if e.id != entry_id))

    def usage(self, charge: Charge, now: datetime) -> Usage:
        view = self._views.get(charge.bucket.key)
        if view is None:
            return EMPTY
        idle = charge.window.idle_since(now)
        if idle is not None and view.entries and max(e.at for e in view.entries) <= idle:
            return EMPTY
        return usage_of(live(view.entries, charge.window, now, view.started_at))

    def prune(self, now: datetime) -> int:
        """Forget buckets holding nothing live any more; how many were dropped."""
        stale = [
            key
            for key, view in self._views.items()
            if not live(view.entries, view.window, now, view.started_at)
        ]
        for key in stale:
            del self._views[key]
        return len(stale)
