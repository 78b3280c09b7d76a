"""Sliding windows and session pots: what a bucket holds at a given moment (pure, no I/O).

A bucket's charges are :class:`Entry` values (one per call: ``1`` for a rate limit, the amount for
a spend limit or budget). A duration window counts the entries younger than the window: an entry
exactly ``window`` old has aged out. The bucket is *reset* when its oldest live entry ages out
(``reset_at``), which frees that entry's share; nothing is reset on a fixed calendar.

A ``window: session`` budget pot has no duration: it holds every entry since the pot started,
and it starts over once the session has been idle for ``idle_ttl``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from helio_proxy.config.durations import seconds as duration_seconds


@dataclass(frozen=True, slots=True)
class Window:
    """How long a charge counts: ``seconds`` for a sliding window, ``None`` for a session pot."""

    seconds: int | None
    idle_ttl: int | None = None
    """A session pot starts over after this many idle seconds."""

    @classmethod
    def parse(cls, text: str, *, idle_ttl: str | None = None) -> Window:
        """``24h`` → a sliding window; ``session`` → a session pot (forgotten after ``idle_ttl``)."""
        if text == "session":
            return cls(None, duration_seconds(idle_ttl) if idle_ttl else None)
        return cls(duration_seconds(text))

    @property
    def is_session(self) -> bool:
        return self.seconds is None

    @property
    def label(self) -> str:
        return "session" if self.seconds is None else f"{self.seconds}s"

    def cutoff(self, now: datetime) -> datetime | None:
        """Entries at or before this moment no longer count (``None``: a session pot keeps all)."""
        return None if self.seconds is None else now - timedelta(seconds=self.seconds)

    def idle_since(self, now: datetime) -> datetime | None:
        """A session pot last active at or before this moment has expired."""
        if self.seconds is not None or self.idle_ttl is None:
            return None
        return now - timedelta(seconds=self.idle_ttl)


@dataclass(frozen=True, slots=True)
class Entry:
    """One charge in a bucket (a committed call, or one reserved and still in flight)."""

    id: str
    at: datetime
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Usage:
    """What a bucket holds now."""

    total: Decimal
    count: int
    oldest: datetime | None
    """When the oldest live entry was taken (``None`` when the bucket is empty)."""

    def reset_at(self, window: Window, now: datetime) -> datetime | None:
        """When the oldest live entry ages out (``now`` when empty; ``None`` for a session pot)."""
        if window.seconds is None:
            return None
        if self.oldest is None:
            return now
        return self.oldest + timedelta(seconds=window.seconds)


EMPTY = Usage(Decimal(0), 0, None)


def live(
    entries: Iterable[Entry], window: Window, now: datetime, started_at: datetime | None = None
) -> list[Entry]:
    """The entries that still count at ``now`` (for a session pot: since ``started_at``)."""
    cutoff = window.cutoff(now)
    kept: list[Entry] = []
    for entry in entries:
        if cutoff is not None and entry.at <= cutoff:
            continue
        if window.seconds is None and started_at is not None and entry.at < started_at:
            continue
        kept.append(entry)
    return kept


def usage_of(entries: Iterable[Entry]) -> Usage:
    """Total, count and oldest moment of entries that all count."""
    total = Decimal(0)
    count = 0
    oldest: datetime | None = None
    for entry in entries:
        total += entry.amount
        count += 1
        if oldest is None or entry.at < oldest:
            oldest = entry.at
    return Usage(total, count, oldest) if count else EMPTY


def utilization(total: Decimal, limit: Decimal) -> float:
    """``total / limit`` as a fraction (0.0 for an empty bucket)."""
    return float(total / limit) if limit > 0 else 1.0
