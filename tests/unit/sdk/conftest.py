import pytest

from helio.testing import FakeSideband, ManualClock

TOKEN = "test-sideband-token"
ALLOWED_KEYS = ("customer_verified", "order_data", "refund_policy")


@pytest.fixture(autouse=True)
def _no_ambient_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A HELIO_SDK_TOKEN or HELIO_SDK_URL in the developer's shell must not change what these tests see."""
    monkeypatch.delenv("HELIO_SDK_TOKEN", raising=False)
    monkeypatch.delenv("HELIO_SDK_URL", raising=False)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_700_000_000.0)


@pytest.fixture
def fake(clock: ManualClock) -> FakeSideband:
    return FakeSideband(token=TOKEN, allowed_keys=ALLOWED_KEYS, clock=clock)
