from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from helio_proxy.config import HelioConfig, parse_config_text
from helio_proxy.evidence import InMemorySessionStore
from helio_proxy.sideband import SidebandApp
from tests.unit.evidence.manual_clock import ManualClock

TOKEN = "t0k-" + "a" * 60
AUTH = {"authorization": f"Bearer {TOKEN}"}
CONFIG = """
version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
dashboard: {enabled: false}
sdk: {enabled: true}
policies:
  rules:
    - match: {tool: orders.refund}
      evidence: {requires: [order_data, refund_policy]}
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def config() -> HelioConfig:
    return parse_config_text(CONFIG)


@pytest.fixture
def store(clock: ManualClock) -> InMemorySessionStore:
    return InMemorySessionStore(clock=clock)


@pytest.fixture
def sideband(store: InMemorySessionStore, config: HelioConfig) -> SidebandApp:
    return SidebandApp(store, lambda: config, TOKEN)


@pytest.fixture
async def client(sideband: SidebandApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=sideband)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://127.0.0.1:3200",
        headers={**AUTH, "user-agent": "helio-sdk/test"},
    ) as http:
        yield http
