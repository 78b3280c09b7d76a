import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DBAPIError

from helio_proxy.store import Store, StoreError
from helio_proxy.store.sql import SqlStore
from helio_proxy.store.sqlite import SqliteStore, sqlite_driver
from helio_proxy.store.testing import temporary_store


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


def _running_sleeps(conn: Connection) -> int:
    """Statements of other sessions now inside ``pg_sleep`` (PostgreSQL)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND query LIKE '%pg_sleep(0.2)%' AND pid <> pg_backend_pid()"
    )
    return int(conn.execute(query).scalar_one())


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


@contextmanager
def _writer_held(store: Store, first: Callable[[Connection], object] | None = None) -> Iterator[Future[None]]:
    """The writer thread busy inside a job (which runs ``first``, if given) until the block ends."""
    entered, release = threading.Event(), threading.Event()

    def hold(conn: Connection) -> None:
        if first is not None:
            first(conn)
        entered.set()
        assert release.wait(10)

    held = store.submit(hold)
    assert entered.wait(10)
    try:
        yield held
    finally:
        release.set()


def _queue_behind_a_busy_writer(store: Store, jobs: list) -> list:
    """Submit ``jobs`` while the writer is held inside another job, then let it go."""
    with _writer_held(store) as held:
        return [held, *(store.submit(job) for job in jobs)]


def test_jobs_that_queue_up_share_one_transaction_on_sqlite_and_not_on_postgres(store: Store) -> None:
    assert isinstance(store, SqlStore)
    begins: list[str] = []
    event.listen(store.engine, "begin", lambda conn: begins.append(threading.current_thread().name))
    futures = _queue_behind_a_busy_writer(store, [_insert(f"g{i}") for i in range(5)])
    for future in futures:
        future.result(timeout=10)
    grouped = begins[1:]  # the first is the holding job's own
    if store.dialect == "sqlite":
        assert grouped == ["helio-store-writer"]  # one BEGIN IMMEDIATE ... COMMIT for the five
    else:
        assert len(grouped) == 5  # replicas' groups could lock rows in opposite orders
    assert store.read_sync(_names) == [f"g{i}" for i in range(5)]


def test_a_failing_job_in_a_group_fails_alone_and_its_neighbours_commit(store: Store) -> None:
    def half_then_fail(conn: Connection) -> None:
        _insert("lost")(conn)
        raise RuntimeError("boom")

    futures = _queue_behind_a_busy_writer(store, [_insert("a"), half_then_fail, _insert("b")])
    assert futures[0].result(timeout=10) is None
    assert futures[1].result(timeout=10) == "helio-store-writer"
    with pytest.raises(RuntimeError, match="boom"):
        futures[2].result(timeout=10)
    assert futures[3].result(timeout=10) == "helio-store-writer"
    # "a" and "b" each ran once: a second insert of the same name would have failed (primary key).
    assert store.read_sync(_names) == ["a", "b"]


def test_a_cancelled_job_in_a_group_never_runs(store: Store) -> None:
    with _writer_held(store):
        kept, dropped = store.submit(_insert("kept")), store.submit(_insert("dropped"))
        assert dropped.cancel()
    kept.result(timeout=10)
    assert store.read_sync(_names) == ["kept"]


# -- write_short: a short job runs at once on the caller's thread where the write lock is free ---


def _insert_on(name: str):
    def job(conn: Connection) -> tuple[str, bool]:
        _insert(name)(conn)
        return threading.current_thread().name, conn.in_transaction()

    return job


async def test_a_short_write_runs_at_once_on_the_event_loop_on_sqlite_only(store: Store) -> None:
    thread, in_transaction = await store.write_short(_insert_on("now"))
    assert in_transaction
    if store.dialect == "sqlite":
        assert thread == threading.current_thread().name  # no hand-off to the writer thread
    else:
        assert thread == "helio-store-writer"  # a network round trip never runs on the loop
    assert store.read_sync(_names) == ["now"]  # committed


async def test_a_short_write_never_waits_for_the_lock_on_the_loop_it_goes_to_the_writer(
    store: Store,
) -> None:
    with _writer_held(store, _insert("held")) as held:  # the writer, inside BEGIN IMMEDIATE
        short = asyncio.ensure_future(store.write_short(_insert_on("queued")))
        started = time.monotonic()
        await asyncio.sleep(0.05)  # the short job starts here, and must hand itself to the writer
        assert time.monotonic() - started < 1.0  # the loop was not held waiting for the lock
        assert not short.done()
    thread, _ = await asyncio.wait_for(short, 10)
    held.result(timeout=10)
    assert thread == "helio-store-writer"
    # With the writer busy the loop does not even try the lock (its connection was never opened):
    # under load the writer thread runs the job while the loop serves other calls.
    assert getattr(store, "_now", None) is None
    assert store.read_sync(_names) == ["held", "queued"]


async def test_a_short_write_never_waits_on_the_loop_for_another_process_holding_the_file(
    tmp_path: Path,
) -> None:
    with temporary_store("sqlite", tmp_path) as store:
        assert isinstance(store, SqliteStore)
        other = sqlite3.connect(store.path, isolation_level=None)  # another worker, say
        try:
            other.execute("BEGIN IMMEDIATE")
            short = asyncio.ensure_future(store.write_short(_insert_on("after")))
            started = time.monotonic()
            await asyncio.sleep(0.05)  # the short job tries the lock here, and must not wait for it
            assert time.monotonic() - started < 1.0
            assert not short.done()
            other.execute("COMMIT")
            thread, _ = await asyncio.wait_for(short, 10)
        finally:
            other.close()
        assert thread == "helio-store-writer"  # the writer waits (busy_timeout), not the loop
        assert store.read_sync(_names) == ["after"]


async def test_a_short_write_that_fails_on_the_loop_leaves_nothing_and_the_next_one_runs(
    store: Store,
) -> None:
    def half_then_fail(conn: Connection) -> None:
        _insert("lost")(conn)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await store.write_short(half_then_fail)
    await store.write_short(_insert_on("kept"))
    assert store.read_sync(_names) == ["kept"]


def _insert_raw(name: str):
    """A job as the limit checks write: straight to the ``sqlite3`` driver, not through SQLAlchemy."""

    def job(conn: Connection) -> str:
        driver = sqlite_driver(conn)
        assert driver is not None
        driver.execute(
            "INSERT INTO budget_meta (name, epoch, fingerprint, updated_at) VALUES (:n, 1, 'f', 't')",
            {"n": name},
        )
        return threading.current_thread().name

    return job


async def test_a_short_write_through_the_driver_alone_is_committed_on_the_loop(tmp_path: Path) -> None:
    with temporary_store("sqlite", tmp_path) as store:
        assert await store.write_short(_insert_raw("raw")) == threading.current_thread().name
        assert store.read_sync(_names) == ["raw"]


async def test_a_short_write_mixing_the_driver_and_sqlalchemy_is_one_transaction(tmp_path: Path) -> None:
    def both(fail: bool):
        def job(conn: Connection) -> None:
            _insert_raw("raw")(conn)
            _insert("orm")(conn)  # SQLAlchemy joins the transaction the loop's connection began
            if fail:
                raise RuntimeError("boom")

        return job

    with temporary_store("sqlite", tmp_path) as store:
        with pytest.raises(RuntimeError, match="boom"):
            await store.write_short(both(fail=True))
        assert store.read_sync(_names) == []  # neither statement kept
        await store.write_short(both(fail=False))
        assert sorted(store.read_sync(_names)) == ["orm", "raw"]


class _Failing:
    """The loop connection's driver, with one statement (``COMMIT``, ``ROLLBACK``) failing."""

    def __init__(self, driver: Any, statement: str, error: str) -> None:
        self.driver = driver
        self.statement = statement
        self.error = error

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == self.statement:
            raise sqlite3.OperationalError(self.error)
        return self.driver.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.driver, name)


def _failing_commit(driver: Any) -> _Failing:
    return _Failing(driver, "COMMIT", "database or disk is full")


async def test_a_short_write_whose_commit_fails_keeps_nothing_and_the_next_one_runs(tmp_path: Path) -> None:
    with temporary_store("sqlite", tmp_path) as store:
        assert isinstance(store, SqliteStore)
        await store.write_short(_insert_raw("first"))
        store._now_driver = _failing_commit(store._now_driver)  # pyright: ignore[reportPrivateUsage]
        with pytest.raises(DBAPIError, match="disk is full"):
            await store.write_short(_insert_raw("lost"))
        assert store._now is None  # pyright: ignore[reportPrivateUsage]  # a fresh connection next time
        assert store.read_sync(_names) == ["first"]
        assert await store.write_short(_insert_raw("kept")) == threading.current_thread().name
        assert sorted(store.read_sync(_names)) == ["first", "kept"]
        # Each dropped connection gives its pool slot back: more failures than the pool holds.
        for attempt in range(16):
            store._now_driver = _failing_commit(store._now_driver)  # pyright: ignore[reportPrivateUsage]
            with pytest.raises(DBAPIError):
                await asyncio.wait_for(store.write_short(_insert_raw("lost")), 10)
            await asyncio.wait_for(store.write_short(_insert_raw(f"again-{attempt}")), 10)
        assert store.engine.pool.checkedout() <= 2  # type: ignore[attr-defined]


async def test_a_failed_short_write_that_cannot_be_rolled_back_gets_a_fresh_connection(
    tmp_path: Path,
) -> None:
    def fails(conn: Connection) -> None:
        _insert_raw("lost")(conn)
        raise RuntimeError("boom")

    with temporary_store("sqlite", tmp_path) as store:
        assert isinstance(store, SqliteStore)
        await store.write_short(_insert_raw("first"))
        # ROLLBACK fails: the transaction stays open.
        driver = store._now_driver  # pyright: ignore[reportPrivateUsage]
        store._now_driver = _Failing(driver, "ROLLBACK", "disk I/O error")  # pyright: ignore[reportPrivateUsage]
        with pytest.raises(RuntimeError, match="boom"):
            await store.write_short(fails)
        assert store._now is None  # pyright: ignore[reportPrivateUsage]  # dropped, not reused mid-transaction
        assert await store.write_short(_insert_raw("kept")) == threading.current_thread().name
        assert sorted(store.read_sync(_names)) == ["first", "kept"]


async def test_in_strict_mode_every_short_write_goes_to_the_writer(tmp_path: Path) -> None:
    with temporary_store("sqlite", tmp_path, durability="strict") as strict:
        thread, _ = await strict.write_short(_insert_on("fsynced"))
    assert thread == "helio-store-writer"  # an fsync per commit never runs on the loop


class _InsertMeta:
    """One statement as :meth:`Store.write_statement` takes it: insert a ``budget_meta`` row."""

    sql = "INSERT INTO budget_meta (name, epoch, fingerprint, updated_at) VALUES (%(n)s, 1, 'f', 't') RETURNING name"

    def __init__(self, name: str) -> None:
        self.params = {"n": name}
        self.thread = ""

    def finish(self, row: Any) -> str:
        self.thread = threading.current_thread().name
        return str(row[0])

    def __call__(self, conn: Connection) -> str:
        _insert(self.params["n"])(conn)
        return self.finish((self.params["n"],))


async def test_a_one_statement_write_is_sent_from_the_loop_alone_on_postgres(store: Store) -> None:
    first = _InsertMeta("alone")
    assert await store.write_statement(first) == "alone"
    assert first.thread == threading.current_thread().name  # no hand-off, on either backend
    assert store.read_sync(_names) == ["alone"]
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await store.write_statement(_InsertMeta("alone"))  # refused whole: nothing is written
    assert await store.write_statement(_InsertMeta("after")) == "after"  # the connection carries on
    if store.dialect == "postgresql":
        conn: Any = store._loop_conn  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        assert conn.autocommit  # its own transaction: no BEGIN, no COMMIT
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert store.read_sync(_names) == ["after", "alone"]


async def test_a_one_statement_write_on_postgres_outlives_its_cancelled_caller(tmp_path: Path) -> None:
    with temporary_store("postgres", tmp_path) as store:
        slow = _InsertMeta("late")
        slow.sql = (
            "INSERT INTO budget_meta (name, epoch, fingerprint, updated_at) "
            "SELECT %(n)s, 1, 'f', 't' FROM pg_sleep(0.2) RETURNING name"
        )
        task = asyncio.ensure_future(store.write_statement(slow))
        # Cancelled once the server runs it (a fixed sleep lost that race on a busy machine, where
        # connecting took longer: the statement was then never sent).
        deadline = time.monotonic() + 10
        while store.read_sync(_running_sleeps) == 0:
            assert time.monotonic() < deadline, "the slow statement never started"
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The statement was not torn in half: it finished, and the connection serves the next one.
        assert await store.write_statement(_InsertMeta("next")) == "next"
        assert store.read_sync(_names) == ["late", "next"]


async def test_calls_queued_behind_a_failing_connect_on_postgres_fail_together(tmp_path: Path) -> None:
    """A database that accepts connections and never answers (a hung server, a half-cut link):
    the calls queued behind the one trying to connect fail with it, instead of each spending the
    connect timeout in turn."""
    import socket

    from sqlalchemy.engine import make_url

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    try:
        with temporary_store("postgres", tmp_path) as store:
            url = make_url(store.url)  # pyright: ignore[reportAttributeAccessIssue]
            port = hung.getsockname()[1]
            store.url = (
                url.set(host="127.0.0.1", port=port)
                .update_query_dict(  # pyright: ignore[reportAttributeAccessIssue]
                    {"connect_timeout": "1"}
                )
                .render_as_string(hide_password=False)
            )
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(store.write_statement(_InsertMeta(f"n{i}")) for i in range(8)), return_exceptions=True
            )
            took = time.monotonic() - started
        assert all(isinstance(o, StoreError) for o in outcomes), outcomes
        assert "cannot reach the store" in str(outcomes[0])
        assert took < 4.0, took  # one connect timeout (1 s, twice over for libpq's retry), not eight
    finally:
        hung.close()
