"""The startup heap of a proxy process is frozen out of the garbage collector's full passes."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from helio_proxy import app as app_module


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freeze_startup_heap_takes_every_live_object_out_of_collections() -> None:
    assert gc.get_freeze_count() == 0
    kept = [object() for _ in range(10)]
    app_module.freeze_startup_heap()
    frozen = gc.get_freeze_count()
    assert frozen > 1_000  # the interpreter's and the test run's objects, at least
    gc.collect()
    assert gc.get_freeze_count() == frozen  # a full pass no longer walks (nor moves) them
    assert len(kept) == 10


def test_run_app_asks_the_app_to_freeze_once_it_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "forbid_inspection", lambda: None)
    seen: list[bool] = []

    async def run() -> None:
        seen.append(fake.freeze_heap)

    fake = SimpleNamespace(freeze_heap=False, run=run)
    app_module.run_app(fake)  # pyright: ignore[reportArgumentType]
    assert seen == [True]


def test_an_embedded_app_does_not_freeze_the_embedding_process() -> None:
    field = app_module.HelioApp.__dataclass_fields__["freeze_heap"]
    assert field.default is False
