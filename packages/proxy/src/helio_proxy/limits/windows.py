"""Sliding windows and session pots: what a bucket holds at a given moment (pure, no I/O).

A bucket holds charges (one per call: ``1`` for a rate limit, the amount for a spend limit or a
budget). A duration window counts the charges younger than the window: a charge exactly
``window`` old has aged out. The bucket is *reset* when its oldest charge ages out
(``reset_at``), which frees that charge's share; nothing is reset on a fixed calendar.

A ``window: session`` budget pot has no duration: it holds every charge since the pot started,
and it starts over once the session has been idle for ``idle_ttl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from helio_proxy.config.durations import seconds as duration_seconds
from helio_proxy.values import value


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


@value
class Usage:
    """What a bucket holds now."""

    total: Decimal
    """Calls (rate limits) or the amounts' sum (spend limits, budgets) still counted."""
    count: int
    oldest: datetime | None
    """When the oldest charge still counted was taken (``None`` when the bucket is empty)."""
    newest: datetime | None = None
    """When the latest one was taken."""

    def charged(self, amount: Decimal, now: datetime) -> Usage:
        """This usage with one more charge of ``amount`` taken at ``now``."""
        return Usage(self.total + amount, self.count + 1, self.oldest or now, now)

    def reset_at(self, window: Window, now: datetime) -> datetime | None:
        """When the oldest charge ages out (``now`` when empty; ``None`` for a session pot)."""
        if window.seconds is None:
            return None
        if self.oldest is None:
            return now
        return self.oldest + timedelta(seconds=window.seconds)


EMPTY: Final = Usage(Decimal(0), 0, None)


def utilization(total: Decimal, limit: Decimal) -> float:
    """``total / limit`` as a fraction (0.0 for an empty bucket)."""
    return float(total / limit) if limit > 0 else 1.0
