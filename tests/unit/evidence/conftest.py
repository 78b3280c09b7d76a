from __future__ import annotations

import pytest

from helio_proxy.evidence import InMemorySessionStore
from tests.unit.evidence.manual_clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(clock: ManualClock) -> InMemorySessionStore:
    return InMemorySessionStore(clock=clock)
