"""The session stores the protocol tests run on: in memory, and store-backed on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Final

from helio_proxy.evidence import InMemorySessionStore, SqlSessionStore, StoreLimits
from helio_proxy.store.testing import temporary_store
from tests.unit.evidence.manual_clock import ManualClock

AnyStore = InMemorySessionStore | SqlSessionStore
KINDS: Final = ("memory", "sqlite", "postgres")

MakeStore = Callable[..., AnyStore]
"""``make(**limits)``: a store of the test's kind on the test's clock with those caps."""


@contextmanager
def store_factory(kind: str, clock: ManualClock, directory: Path) -> Generator[MakeStore]:
    """Stores of ``kind``; the SQL ones each get their own empty database, closed on exit."""
    with ExitStack() as stack:

        def make(**limits: float) -> AnyStore:
            caps = StoreLimits(**limits)  # pyright: ignore[reportArgumentType]
            if kind == "memory":
                return InMemorySessionStore(clock=clock, limits=caps)
            backend = "sqlite" if kind == "sqlite" else "postgres"
            index = len(stack._exit_callbacks)  # pyright: ignore[reportPrivateUsage]
            place = directory / f"store-{index}"
            place.mkdir()
            store = stack.enter_context(temporary_store(backend, place))
            return SqlSessionStore(store, clock=clock, limits=caps)

        yield make
