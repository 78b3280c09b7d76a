import contextlib
import multiprocessing
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from helio_proxy.store import Durability, create_store
from helio_proxy.store.sqlite import DECIMAL_SUM, SqliteStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_wal_files_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    store = create_store(f"sqlite:///{tmp_path / 'audit.db'}")
    assert isinstance(store, SqliteStore)
    store.open_sync()
    try:
        store.submit(
            lambda c: c.execute(text("INSERT INTO budget_meta VALUES ('b', 1, 'f', 't', NULL)"))
        ).result()
        files = store.files()
        assert {p.name for p in files} == {"audit.db", "audit.db-wal", "audit.db-shm"}
        for file in files:
            assert _mode(file) == 0o600, file
    finally:
        store.close_sync()


@pytest.mark.parametrize(("durability", "expected"), [("batched", 1), ("strict", 2)])
def test_durability_sets_sqlite_synchronous_on_wal(
    tmp_path: Path, durability: Durability, expected: int
) -> None:
    store = create_store(f"sqlite:///{tmp_path / 'a.db'}", durability=durability)
    store.open_sync()
    try:
        mode, synchronous = store.submit(
            lambda c: (
                c.exec_driver_sql("PRAGMA journal_mode").scalar(),
                c.exec_driver_sql("PRAGMA synchronous").scalar(),
            )
        ).result()
    finally:
        store.close_sync()
    assert mode == "wal"
    assert synchronous == expected  # NORMAL = 1, FULL = 2


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "audit.db"
    store = create_store(f"sqlite:///{path}")
    store.open_sync()
    store.close_sync()
    assert path.exists()


def test_decimal_text_is_summed_exactly_in_the_query(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 'sum.db'}")
    store.open_sync()
    try:
        total = store.read_sync(
            lambda conn: conn.exec_driver_sql(
                f"SELECT {DECIMAL_SUM}(a), SUM(a) FROM (SELECT '0.1' AS a UNION ALL SELECT '0.2' "  # noqa: S608 - constants only
                "UNION ALL SELECT '1e-20' UNION ALL SELECT NULL)"
            ).one()
        )
    finally:
        store.close_sync()
    exact, floating = total
    assert exact == "0.30000000000000000001"
    assert floating != 0.3  # what SQLite's own SUM gives: binary floating point


def test_the_wal_is_folded_back_by_the_checkpointer_thread_not_by_the_writers_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from helio_proxy.store import sqlite as backend

    monkeypatch.setattr(backend, "CHECKPOINT_INTERVAL_SECONDS", 0.02)
    store = create_store(f"sqlite:///{tmp_path / 'audit.db'}")
    assert isinstance(store, SqliteStore)
    store.open_sync()
    try:
        names = {t.name for t in threading.enumerate()}
        assert "helio-store-checkpoint" in names

        def writer_setting(c: object) -> int:
            return int(c.connection.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0])  # type: ignore[attr-defined]

        assert store.submit(writer_setting).result() == 0  # a commit never checkpoints
        blob = "x" * 4000
        for i in range(40):
            store.submit(
                lambda c, i=i: c.execute(
                    text("INSERT INTO budget_meta VALUES (:n, 1, :f, 't', NULL)"), {"n": f"b{i}", "f": blob}
                )
            ).result()
        # The rows reach the database file itself: a copy of it without its WAL holds them.
        import shutil
        import sqlite3

        def in_file_alone() -> int:
            copy = tmp_path / "file-only.db"
            shutil.copyfile(tmp_path / "audit.db", copy)
            with contextlib.closing(sqlite3.connect(copy)) as alone:
                try:
                    return int(alone.execute("SELECT count(*) FROM budget_meta").fetchone()[0])
                except sqlite3.OperationalError:  # not even the schema is in the file yet
                    return 0

        deadline = time.monotonic() + 10
        while in_file_alone() < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_file_alone() == 40
        assert store.checkpoints >= 1
    finally:
        store.close_sync()
    assert "helio-store-checkpoint" not in {t.name for t in threading.enumerate()}


def _open_new_files_in_step(directory: str, files: int, barrier: Any, failures: Any) -> None:
    """One of two processes: open each new file through the store's engine, the other process
    doing the same at the same moment, and take a write lock on it as the store's writer does
    (``BEGIN IMMEDIATE``: a deferred transaction that read first and then wrote could be refused
    at once, without waiting, when the other process had written meanwhile)."""
    import contextlib as _contextlib

    from sqlalchemy import text as _text

    from helio_proxy.store.sql import WRITER_MARK as _WRITER_MARK
    from helio_proxy.store.sqlite import SqliteStore as _SqliteStore

    for n in range(files):
        barrier.wait()
        store = _SqliteStore(f"sqlite:///{Path(directory) / f'{n}.db'}")
        engine = store.create_engine()
        try:
            with engine.connect() as conn:
                conn.info[_WRITER_MARK] = True
                mode = conn.execute(_text("PRAGMA journal_mode")).scalar_one()
                conn.execute(_text("CREATE TABLE IF NOT EXISTS t (x)"))
                conn.execute(_text("INSERT INTO t VALUES (1)"))
                conn.commit()
                if mode != "wal":
                    failures.put(f"{n}: journal_mode {mode}")
        except Exception as exc:  # every failure is reported to the test
            failures.put(f"{n}: {type(exc).__name__}: {exc}")
        finally:
            with _contextlib.suppress(Exception):
                engine.dispose()


def test_two_processes_opening_a_new_file_together_both_get_it_in_wal_mode(tmp_path: Path) -> None:
    """``PRAGMA journal_mode = WAL`` answers ``database is locked`` at once, ignoring
    ``busy_timeout``, while another connection opens the new file (two proxies or workers
    started together: 5-10 % of openings failed); the store retries it."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    failures = context.Queue()
    files = 60
    processes = [
        context.Process(target=_open_new_files_in_step, args=(str(tmp_path), files, barrier, failures))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0, 0]
    reported: list[str] = []
    while not failures.empty():
        reported.append(failures.get())
    assert reported == []
    assert len(list(tmp_path.glob("*.db"))) == files
