"""This proxy's local view of its buckets, for answers that cannot wait on the store (dry runs).

Each bucket is remembered as the ledger last reported it (when this proxy charged it, or at
startup). A bucket whose newest charge has aged out holds nothing; otherwise the view may still
count charges that aged out since, or miss charges other replicas made. Enforcement never reads
it: every charge is decided by the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from helio_proxy.limits.charges import Charge
from helio_proxy.limits.ledger import BucketView
from helio_proxy.limits.windows import EMPTY, Usage, Window


def _expired(view: BucketView, window: Window, now: datetime) -> bool:
    newest = view.usage.newest
    if newest is None:
        return True
    cutoff = window.cutoff(now)
    if cutoff is not None:
        return newest <= cutoff
    idle = window.idle_since(now)
    return idle is not None and newest <= idle


class Mirror:
    def __init__(self) -> None:
        self._views: dict[str, BucketView] = {}

    def __len__(self) -> int:
        return len(self._views)

    def __contains__(self, key: object) -> bool:
        return key in self._views

    def put(self, views: Iterable[BucketView]) -> None:
        for view in views:
            self._views[view.bucket.key] = view

    def release(self, key: str, amount: Decimal) -> None:
        """A released charge no longer counts."""
        self.settled(key, amount, 0)

    def usage(self, charge: Charge, now: datetime) -> Usage:
        view = self._views.get(charge.bucket.key)
        if view is None or _expired(view, charge.window, now):
            return EMPTY
        return view.usage

    def live(self, now: datetime) -> list[BucketView]:
        """Every bucket still counting something at ``now`` (metrics read this at scrape time)."""
        return [view for view in self._views.values() if not _expired(view, view.window, now)]

    def prune(self, now: datetime) -> int:
        """Forget buckets holding nothing any more; how many were dropped."""
        stale = [key for key, view in self._views.items() if _expired(view, view.window, now)]
        for key in stale:
            del self._views[key]
        return len(stale)

    def settled(self, key: str, unused: Decimal, rows: int) -> None:
        """A charge's row was replaced by ``rows`` rows, ``unused`` less in all (a grant settled;
        none and the whole amount: a charge released)."""
        view = self._views.get(key)
        if view is None:
            return
        usage = view.usage
        left = Usage(
            max(usage.total - unused, Decimal(0)), max(usage.count - 1 + rows, 0), usage.oldest, usage.newest
        )
        self._views[key] = replace(view, usage=left if left.count else EMPTY)
