import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from helio_proxy.audit import chain
from helio_proxy.audit.records import ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.audit.verify import verify_chain
from helio_proxy.audit.writer import MAX_BATCH, AuditWriter
from helio_proxy.store import Store
from helio_proxy.store.base import Job

START = datetime(2026, 3, 1, tzinfo=UTC)


class TickingClock:
    """Each reading is a millisecond later, so every batch gets its own ``created_at``."""

    def __init__(self) -> None:
        self._now = START
        self._mono = 0.0

    def now(self) -> datetime:
        self._now += timedelta(milliseconds=1)
        return self._now

    def monotonic(self) -> float:
        self._mono += 0.001
        return self._mono


def _record(i: int = 0) -> ToolCallRecord:
    return ToolCallRecord(timestamp=START, tool_name=f"tool_{i}", tool_input={"i": i})


def _writer(store: Store, **options: Any) -> AuditWriter:
    return AuditWriter(store, RowBuilder(Redactor()), clock=TickingClock(), **options)


def _count(store: Store) -> int:
    return int(store.read_sync(lambda c: c.execute(text("SELECT count(*) FROM audit_records")).scalar_one()))


def _batches(store: Store) -> list[int]:
    """Records per transaction (a batch's rows share its created_at), in commit order."""
    query = "SELECT count(*) FROM audit_records GROUP BY created_at ORDER BY min(seq)"
    return [int(n) for (n,) in store.read_sync(lambda c: c.execute(text(query)).all())]


async def _until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll (bounded): the writer's timer runs on the loop's own clock, which tests cannot move."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def _writes_settled(store: Store) -> None:
    """Everything submitted to the store so far has committed (its writer is first-in first-out)."""
    await asyncio.wait_for(store.write(lambda _conn: None), 10)


def _block_writer(store: Store) -> tuple[threading.Event, Future[None]]:
    """Occupy the store's writer thread until the returned event is set."""
    release = threading.Event()
    return release, store.submit(lambda _c: release.wait(10) and None)


async def test_a_batch_is_sent_at_fifty_records_in_one_transaction(store: Store) -> None:
    writer = _writer(store, flush_interval=60)
    writer.start()
    for i in range(120):
        writer.submit(_record(i))
    await _writes_settled(store)
    assert _batches(store) == [50, 50]
    await writer.close()
    assert _batches(store) == [50, 50, 20]
    assert verify_chain(store).verified == 120


async def test_records_that_gather_while_the_writer_is_busy_leave_as_one_larger_batch(store: Store) -> None:
    """Two batches in flight at most; the rest waits and goes out together when one commits (at
    most MAX_BATCH per transaction), instead of one more transaction per 50 records."""
    writer = _writer(store, flush_interval=60)
    writer.start()
    release, blocker = _block_writer(store)
    for i in range(2_600):
        writer.submit(_record(i))
    release.set()
    blocker.result(timeout=5)
    await _until(lambda: writer.stats.written == 2_600, within=20)
    assert _batches(store) == [50, 50, MAX_BATCH, 500]
    assert verify_chain(store).verified == 2_600
    await writer.close()


async def test_a_small_remainder_after_a_capped_batch_is_still_sent_after_the_flush_interval(
    store: Store,
) -> None:
    writer = _writer(store, flush_interval=0.05)
    writer.start()
    release, blocker = _block_writer(store)
    for i in range(100 + MAX_BATCH + 30):
        writer.submit(_record(i))
    release.set()
    blocker.result(timeout=5)
    await _until(lambda: writer.stats.written == 100 + MAX_BATCH + 30, within=20)
    assert _batches(store) == [50, 50, MAX_BATCH, 30]
    await writer.close()


async def test_a_partial_batch_is_sent_after_the_flush_interval(store: Store) -> None:
    writer = _writer(store, flush_interval=0.02)
    writer.start()
    for i in range(3):
        assert writer.submit(_record(i)) is None  # batched mode: nothing to wait for
    await _until(lambda: writer.stats.written == 3)
    assert _batches(store) == [3]
    await writer.close()


async def test_strict_mode_commits_everything_waiting_in_one_group_and_wakes_every_caller(
    store: Store,
) -> None:
    writer = _writer(store, durability="strict")
    writer.start()
    release, blocker = _block_writer(store)
    first = writer.submit(_record(0))
    await asyncio.sleep(0)  # let the first group be sent (it queues behind the blocker)
    rest = [writer.submit(_record(i)) for i in range(1, 31)]
    assert first is not None
    assert all(w is not None for w in rest)
    assert not first.done()
    release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *rest), 10)  # type: ignore[arg-type]
    assert results == [True] * 31
    blocker.result(timeout=5)
    assert _batches(store) == [1, 30]
    await writer.close()


@pytest.mark.parametrize("durability", ["batched", "strict"])
async def test_batched_audit_writes_in_short_steps_and_strict_audit_does_not(
    store: Store, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    """Short steps keep a call arriving at c=1 from waiting on the writer; in strict mode every
    call waits for the commit, which they would make later under load."""
    seen: list[float | None] = []
    append_rows = chain.append_rows

    def spy(conn: Connection, rows: Any, **options: Any) -> Any:
        seen.append(options["step_pause"])
        return append_rows(conn, rows, **options)

    monkeypatch.setattr(chain, "append_rows", spy)
    writer = _writer(store, durability=durability, flush_interval=60)
    writer.start()
    for i in range(50):
        writer.submit(_record(i))
    await writer.close()
    assert seen
    assert set(seen) == {0.0 if durability == "batched" else None}  # a thread only lets go of the GIL
    assert _count(store) == 50
    assert verify_chain(store).verified == 50


async def test_a_full_queue_drops_records_counts_and_logs_them_without_blocking(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    writer = _writer(store, max_pending=10, flush_interval=60)
    writer.start()
    release, _ = _block_writer(store)
    with caplog.at_level(logging.WARNING, logger="helio.audit"):
        for i in range(15):
            writer.submit(_record(i))
    assert writer.stats.dropped == 5
    assert "dropped" in caplog.text
    release.set()
    await writer.close()
    assert _count(store) == 10


class FlakyStore:
    """The real store behind a seam that fails the first ``failures`` submissions."""

    def __init__(self, inner: Store, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def submit(self, job: Job[Any]) -> Future[Any]:
        if self.failures > 0:
            self.failures -= 1
            future: Future[Any] = Future()
            future.set_exception(ConnectionError("database went away"))
            return future
        return self.inner.submit(job)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_failed_batch_is_retried_and_then_written(store: Store) -> None:
    writer = AuditWriter(
        FlakyStore(store, failures=2),
        RowBuilder(Redactor()),
        durability="strict",
        retry_delays=(0, 0, 0),  # type: ignore[arg-type]
    )
    writer.start()
    waiter = writer.submit(_record())
    assert waiter is not None
    assert await asyncio.wait_for(waiter, 5) is True
    assert _count(store) == 1
    await writer.close()


async def test_a_batch_that_keeps_failing_is_counted_and_releases_its_callers(store: Store) -> None:
    writer = AuditWriter(
        FlakyStore(store, failures=10),
        RowBuilder(Redactor()),
        durability="strict",
        retry_delays=(0,),  # type: ignore[arg-type]
    )
    writer.start()
    waiter = writer.submit(_record())
    assert waiter is not None
    assert await asyncio.wait_for(waiter, 5) is False
    assert writer.stats.failed == 1
    await writer.close()


async def test_the_crash_drain_writes_what_is_still_buffered(store: Store) -> None:
    writer = _writer(store, flush_interval=60)
    writer.start()
    for i in range(7):
        writer.submit(_record(i))
    assert _count(store) == 0
    writer.drain_sync()
    assert _count(store) == 7
    await writer.close()


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_crashing_process_drains_the_audit_buffer_at_exit(tmp_path: Path, writer: str) -> None:
    """An unhandled exception ends the loop; atexit still commits the buffered records. With a
    writer process, the batch already handed to it is committed by it once its input ends (after
    the proxy is gone), and what was still buffered by the proxy's own atexit drain."""
    db = tmp_path / "crash.db"
    calls = 75 if writer == "process" else 25  # with a process: one batch of 50 sent, 25 buffered
    script = textwrap.dedent(
        f"""
        import asyncio
        from datetime import datetime, UTC
        from helio_proxy.audit.records import ToolCallRecord
        from helio_proxy.audit.redact import Redactor
        from helio_proxy.audit.rows import RowBuilder
        from helio_proxy.audit.sink import ProcessSink, SinkSetup
        from helio_proxy.audit.writer import AuditWriter
        from helio_proxy.store import create_store

        url = "sqlite:///{db}"
        store = create_store(url)
        store.open_sync()

        async def main():
            rows = RowBuilder(Redactor())
            sink = ProcessSink(SinkSetup(url, rows, True, None)) if {writer == "process"} else None
            if sink is not None:
                await sink.start()
            writer = AuditWriter(store, rows, sink=sink, flush_interval=60)
            writer.start()
            for i in range({calls}):
                writer.submit(ToolCallRecord(timestamp=datetime.now(UTC), tool_name="t"))
            raise RuntimeError("crash")

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "crash" in result.stderr
    from helio_proxy.store import create_store

    store = create_store(f"sqlite:///{db}")
    store.open_sync()
    try:
        deadline = time.monotonic() + 30  # a writer process may still be committing its batch
        while _count(store) < calls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _count(store) == calls
        assert verify_chain(store).ok
    finally:
        store.close_sync()


class RollingBackStore(FlakyStore):
    """Runs the first ``failures`` jobs for real, then fails them: rolled back after the rows got
    their sequence numbers and links."""

    def submit(self, job: Job[Any]) -> Future[Any]:
        if self.failures > 0:
            self.failures -= 1

            def ran_then_failed(conn: Connection) -> Any:
                job(conn)
                raise ConnectionError("lost before the commit")

            return self.inner.submit(ran_then_failed)
        return self.inner.submit(job)


async def test_a_batch_rolled_back_after_its_rows_were_linked_is_written_again_whole(store: Store) -> None:
    first = _writer(store)
    first.start()
    first.submit(_record(0))
    await first.close()
    writer = AuditWriter(
        RollingBackStore(store, failures=1),  # type: ignore[arg-type]
        RowBuilder(Redactor()),
        durability="strict",
        retry_delays=(0,),
    )
    writer.start()
    waiters = [writer.submit(_record(i)) for i in (1, 2)]
    assert [await asyncio.wait_for(w, 5) for w in waiters if w is not None] == [True, True]
    await writer.close()
    assert _count(store) == 3
    assert verify_chain(store).verified == 3


async def test_rows_are_built_on_the_event_loop_and_written_on_the_store_thread(store: Store) -> None:
    built: list[str] = []

    class Watched(RowBuilder):
        def build(self, record: Any, created_at: str) -> dict[str, Any]:
            built.append(threading.current_thread().name)
            return super().build(record, created_at)

    writer = AuditWriter(store, Watched(Redactor()), clock=TickingClock())
    writer.start()
    writer.submit(_record())
    assert built == [threading.current_thread().name]  # at once, by the caller
    await writer.close()
    [created] = store.read_sync(lambda c: c.execute(text("SELECT created_at FROM audit_records")).all())
    assert created[0] > START.isoformat()[:10]  # the batch's time, set on the writer


async def test_a_record_that_cannot_be_serialized_is_skipped_and_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(RowBuilder):
        def build(self, record: Any, created_at: str) -> dict[str, Any]:
            if record.tool_name == "tool_1":
                raise ValueError("cannot encode")
            return super().build(record, created_at)

    writer = AuditWriter(store, Broken(Redactor()), clock=TickingClock())
    writer.start()
    with caplog.at_level(logging.ERROR, logger="helio.audit"):
        assert writer.submit(_record(1)) is None
        writer.submit(_record(2))
    await writer.close()
    assert _count(store) == 1
    assert writer.pending() == 0
    assert "could not be serialized; skipped" in caplog.text


async def test_writes_never_run_on_the_event_loop(store: Store) -> None:
    seen: list[str] = []
    original: Callable[[Job[Any]], Future[Any]] = store.submit

    def spying_submit(job: Job[Any]) -> Future[Any]:
        def wrapped(conn: Connection) -> Any:
            seen.append(threading.current_thread().name)
            return job(conn)

        return original(wrapped)

    class Spy(FlakyStore):
        def submit(self, job: Job[Any]) -> Future[Any]:
            return spying_submit(job)

    writer = AuditWriter(Spy(store, 0), RowBuilder(Redactor()))  # type: ignore[arg-type]
    writer.start()
    writer.submit(_record())
    await writer.close()
    assert seen == ["helio-store-writer"]
