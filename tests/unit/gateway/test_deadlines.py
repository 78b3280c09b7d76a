"""Request deadlines behind one timer per loop (gateway/deadlines.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from helio_proxy.gateway import deadlines
from helio_proxy.gateway.deadlines import RESOLUTION, deadline_scope

SLACK = 0.05  # scheduling noise on a shared machine, on top of the bucket resolution


def registry() -> deadlines.Deadlines:
    found = deadlines._LOOPS.get(asyncio.get_running_loop())  # pyright: ignore[reportPrivateUsage]
    assert found is not None
    return found


async def test_a_request_that_ends_in_time_leaves_nothing_behind() -> None:
    loop = asyncio.get_running_loop()
    with deadline_scope(loop.time() + 5):
        await asyncio.sleep(0)
    assert registry().pending() == 0
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0.01)  # no stray cancellation arrives later


async def test_a_request_still_running_at_its_deadline_times_out_not_before() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        with deadline_scope(start + 0.1):
            await asyncio.sleep(10)
    waited = loop.time() - start
    assert 0.1 <= waited <= 0.1 + RESOLUTION + SLACK
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # the timeout's cancellation was taken back
    assert registry().pending() == 0


async def test_a_deadline_already_past_times_out_at_the_first_await() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        with deadline_scope(loop.time() - 1):
            await asyncio.sleep(1)


async def test_only_the_late_requests_time_out_and_later_buckets_still_fire() -> None:
    loop = asyncio.get_running_loop()
    outcomes: dict[str, str] = {}

    async def request(name: str, deadline: float, takes: float) -> None:
        try:
            with deadline_scope(loop.time() + deadline):
                await asyncio.sleep(takes)
            outcomes[name] = "answered"
        except TimeoutError:
            outcomes[name] = "timeout"

    await asyncio.gather(
        request("quick", 0.05, 0.0),  # arms the timer at the earliest bucket, then leaves it
        request("slow-early", 0.08, 5),
        request("in-time", 0.3, 0.1),
        request("slow-late", 0.2, 5),
    )
    assert outcomes == {
        "quick": "answered",
        "slow-early": "timeout",
        "in-time": "answered",
        "slow-late": "timeout",
    }
    assert registry().pending() == 0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def request() -> None:
        with deadline_scope(loop.time() + 5):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.ensure_future(request())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert registry().pending() == 0


async def test_an_exception_inside_passes_through_and_the_scope_is_left() -> None:
    loop = asyncio.get_running_loop()

    async def failing() -> None:
        with deadline_scope(loop.time() + 5):
            await asyncio.sleep(0)
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await failing()
    assert registry().pending() == 0


def _on(runner: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            with deadline_scope(loop.time() + 0.02):
                await asyncio.sleep(5)
        with deadline_scope(loop.time() + 5):
            await asyncio.sleep(0)
        assert registry().loop is loop

    runner(main())


def test_each_loop_has_its_own_deadlines_uvloop_and_asyncio() -> None:
    _on(uvloop.run)
    _on(asyncio.run)
    _on(uvloop.run)
