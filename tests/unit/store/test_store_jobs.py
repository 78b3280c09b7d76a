import asyncio
import threading

import pytest
from sqlalchemy import Connection, text

from helio_proxy.store import Store, StoreError


def _insert(name: str):
    def job(conn: Connection) -> str:
        conn.execute(
            text("INSERT INTO budget_meta (name, epoch, fingerprint, updated_at) VALUES (:n, 1, 'f', 't')"),
            {"n": name},
        )
        return threading.current_thread().name

    return job


def _names(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute(text("SELECT name FROM budget_meta ORDER BY name"))]


def test_write_jobs_run_in_order_on_the_single_writer_thread(store: Store) -> None:
    futures = [store.submit(_insert(f"b{i:02d}")) for i in range(20)]
    threads = {f.result(timeout=10) for f in futures}
    assert threads == {"helio-store-writer"}
    assert store.read_sync(_names) == [f"b{i:02d}" for i in range(20)]


def test_a_failing_job_rolls_back_alone_and_the_writer_carries_on(store: Store) -> None:
    def half_then_fail(conn: Connection) -> None:
        _insert("lost")(conn)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.submit(half_then_fail).result(timeout=10)
    store.submit(_insert("kept")).result(timeout=10)
    assert store.read_sync(_names) == ["kept"]


async def test_reads_and_writes_run_off_the_event_loop(store: Store) -> None:
    loop_thread = threading.current_thread().name
    writer_thread = await store.write(_insert("x"))
    reader_thread = await store.read(lambda conn: threading.current_thread().name)
    assert loop_thread not in (writer_thread, reader_thread)
    assert reader_thread.startswith("helio-store-read")
    assert await asyncio.wait_for(store.read(_names), 5) == ["x"]


def test_closing_finishes_queued_writes_and_then_refuses_new_ones(store: Store) -> None:
    futures = [store.submit(_insert(f"q{i}")) for i in range(5)]
    store.close_sync()
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(StoreError, match="closed"):
        store.submit(_insert("late")).result(timeout=1)
