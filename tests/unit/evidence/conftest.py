from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from tests.unit.evidence.backends import KINDS, AnyStore, MakeStore, store_factory
from tests.unit.evidence.manual_clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=KINDS)
def make_store(request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path) -> Generator[MakeStore]:
    """A store factory of each kind: in memory, and store-backed on SQLite and PostgreSQL."""
    with store_factory(str(request.param), clock, tmp_path) as make:
        yield make


@pytest.fixture
def store(make_store: MakeStore) -> AnyStore:
    return make_store()
