"""How a forwarded call's limit reservations are settled once the upstream's answer is known."""

from __future__ import annotations

import asyncio
import logging

import pytest

from helio_proxy.errors import UpstreamUnavailable
from helio_proxy.gateway import pipeline
from helio_proxy.governance import Settlement
from helio_proxy.policy import Allow

ALLOW = Allow(reason="default_allow")


class Held:
    """A reservation that records how it was settled; ``now``: whether it commits without I/O."""

    def __init__(self, now: bool = True, fails: bool = False) -> None:
        self.now = now
        self.fails = fails
        self.settled: list[str] = []

    def commit_now(self) -> bool:
        if self.fails:
            raise RuntimeError("the event bus is down")
        if self.now:
            self.settled.append("commit_now")
        return self.now

    async def commit(self) -> None:
        await asyncio.sleep(0)
        self.settled.append("commit")

    async def release(self) -> None:
        await asyncio.sleep(0)
        self.settled.append("release")


async def _drain() -> None:
    while pipeline._pending:  # pyright: ignore[reportPrivateUsage]
        await asyncio.gather(*pipeline._pending)  # pyright: ignore[reportPrivateUsage]


async def test_a_delivered_call_commits_a_ledger_reservation_at_once_without_a_task() -> None:
    held = Held(now=True)
    settlement = Settlement(ALLOW, reservations=[held])
    pipeline._charging(settlement)({"result": {}}, None)  # pyright: ignore[reportPrivateUsage]
    assert held.settled == ["commit_now"]
    assert not pipeline._pending  # pyright: ignore[reportPrivateUsage]
    assert settlement.reservations == []  # settled exactly once: nothing left for the finally


async def test_a_reservation_that_needs_io_is_committed_by_a_task() -> None:
    quick, slow = Held(now=True), Held(now=False)
    pipeline._charging(Settlement(ALLOW, reservations=[quick, slow]))({"result": {}}, None)  # pyright: ignore[reportPrivateUsage]
    assert quick.settled == ["commit_now"]
    assert slow.settled == []
    assert len(pipeline._pending) == 1  # pyright: ignore[reportPrivateUsage]
    await _drain()
    assert slow.settled == ["commit"]
    assert quick.settled == ["commit_now"]  # not committed twice


async def test_an_undelivered_call_releases_and_never_commits() -> None:
    held = Held(now=True)
    refused = UpstreamUnavailable("connection refused", failure_reason="connection_refused")
    assert not refused.delivered
    pipeline._charging(Settlement(ALLOW, reservations=[held]))(None, refused)  # pyright: ignore[reportPrivateUsage]
    await _drain()
    assert held.settled == ["release"]


async def test_a_failing_commit_is_logged_and_the_others_still_settle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, fine, slow = Held(fails=True), Held(now=True), Held(now=False)
    with caplog.at_level(logging.ERROR, logger="helio_proxy.governance"):
        pipeline._charging(Settlement(ALLOW, reservations=[broken, fine, slow]))({"result": {}}, None)  # pyright: ignore[reportPrivateUsage]
        await _drain()
    assert fine.settled == ["commit_now"]
    assert slow.settled == ["commit"]
    assert broken.settled == []
    assert "settling a limit reservation failed" in caplog.text
