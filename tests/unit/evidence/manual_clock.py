"""A hand-moved clock for the session store and sideband tests (nothing sleeps)."""

from __future__ import annotations


class ManualClock:
    """Epoch seconds that move only when told."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def ms(self) -> int:
        return int(self.now * 1000)
