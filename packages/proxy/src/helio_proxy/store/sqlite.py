"""The default backend: one SQLite file (``sqlite:///path``), WAL, files readable by the owner only.

``batched`` durability runs ``synchronous=NORMAL`` (a committed transaction survives a process
crash; a power cut can lose the last ones), ``strict`` runs ``synchronous=FULL`` (every commit
is fsync'd before it returns). The database, ``-wal`` and ``-shm`` files are created mode 0600.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Hashable
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, StatementError

from helio_proxy.store.base import Durability, Job, StoreError
from helio_proxy.store.registry import register_backend
from helio_proxy.store.sql import WRITER_MARK, SqlStore

T = TypeVar("T")

log = logging.getLogger("helio.store")

FILE_MODE: Final = 0o600
BUSY_TIMEOUT_MS: Final = 10_000
"""How long a connection waits for another process's lock before failing."""

CHECKPOINT_INTERVAL_SECONDS: Final = 0.5
"""The checkpointer folds the WAL back into the database file at most this often, when it was
written since the last time."""


DECIMAL_SUM: Final = "helio_decimal_sum"
"""SQL aggregate this backend adds: the exact sum of decimal-text values, as decimal text.

SQLite has no exact decimal type (its ``SUM`` of text goes through floats), so amounts stored as
text are added up with :class:`decimal.Decimal` inside the query instead."""


def enable_wal(dbapi_connection: sqlite3.Connection, timeout: float = BUSY_TIMEOUT_MS / 1000) -> None:
    """Put the file in WAL mode (it stays so: later connections find it there).

    Switching to WAL needs the file to itself for a moment, and SQLite answers ``database is
    locked`` at once, whatever ``busy_timeout`` says, when another connection is opening it at
    the same moment: two proxies or workers started together on a new file failed 5-10 % of the
    time. The switch is retried here, for as long as ``busy_timeout`` would have waited.
    """
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class _DecimalSum:
    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | int | None) -> None:
        if value is not None:
            self.total += Decimal(value)

    def finalize(self) -> str:
        return format(self.total, "f")


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The store URL for a SQLite file path."""
    return f"sqlite:///{path}"


class SqliteStore(SqlStore):
    """A :class:`SqlStore` on one SQLite file."""

    dialect = "sqlite"
    group_writes = True

    def __init__(self, url: str, *, durability: Durability = "batched") -> None:
        super().__init__(url, durability=durability)
        self._now: Connection | None = None
        """The event loop's own connection (:meth:`write_short`), opened on first use."""
        self._now_driver: Any = None
        """The ``sqlite3`` connection under ``_now``."""
        self._checkpointer: threading.Thread | None = None
        self._checkpointer_stop = threading.Event()
        self.checkpoints = 0
        """WAL checkpoints the checkpointer thread has run."""
        database = make_url(url).database
        if not database or database == ":memory:":
            raise StoreError(f"{url}: the SQLite store needs a file path (sqlite:///path/to/helio.db)")
        self.path = Path(database)
        self._wal = Path(f"{self.path}-wal")

    @property
    def description(self) -> str:
        return str(self.path)

    def change_stamp(self) -> Hashable | None:
        """The size, modification time and inode of the WAL: every commit, from any process,
        writes its pages there first (a checkpoint only copies them on into the database file, so
        it leaves the stamp alone), so an unchanged stamp means nothing was committed since, one
        ``stat`` instead of a read. The kernel stamps modification times at its clock tick, so a
        commit that rewrites the WAL at the same size within the tick of the last ``stat`` can
        leave the stamp as it was: a poller also reads now and then whatever the stamp says (see
        ``store.changes``)."""
        try:
            info = os.stat(self._wal)
        except FileNotFoundError:
            return ()  # no WAL: nothing was written since the last connection closed
        except OSError:
            return None  # cannot tell: the poller reads
        return (info.st_size, info.st_mtime_ns, info.st_ino)

    def files(self) -> list[Path]:
        """The database file and its WAL companions (those that exist)."""
        candidates = [self.path, self._wal, Path(f"{self.path}-shm")]
        return [p for p in candidates if p.exists()]

    def create_engine(self) -> Engine:
        self._create_file()
        engine = create_engine(f"sqlite+pysqlite:///{self.path}", pool_size=8, max_overflow=4)
        synchronous = "FULL" if self.durability == "strict" else "NORMAL"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:  # pyright: ignore[reportUnusedFunction]
            # Let SQLAlchemy's "begin" event issue BEGIN itself (the pysqlite recipe), so the
            # writer can take the write lock up front with BEGIN IMMEDIATE.
            dbapi_connection.isolation_level = None
            dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            enable_wal(dbapi_connection)
            dbapi_connection.execute(f"PRAGMA synchronous = {synchronous}")
            dbapi_connection.create_aggregate(DECIMAL_SUM, 1, _DecimalSum)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:  # pyright: ignore[reportUnusedFunction]
            # Straight to the driver: SQLAlchemy's execution context cost more than the BEGIN
            # (~20 us a transaction). Its errors are wrapped as SQLAlchemy would have.
            statement = "BEGIN IMMEDIATE" if conn.info.get(WRITER_MARK) else "BEGIN"
            driver = conn.connection.driver_connection
            assert driver is not None
            if driver.in_transaction:
                return  # the loop's connection began it itself (see _write_now): SQLAlchemy joins it
            try:
                driver.execute(statement)
            except sqlite3.Error as exc:
                raise _wrapped(statement, exc) from exc

        return engine

    async def write_short(self, job: Job[T]) -> T:
        """Run ``job`` at once on the event loop's own connection if the write lock is free.

        Only while the writer thread is idle: a busy writer holds the lock (an attempt would
        fail), and under load the loop is better off serving other calls while the writer thread
        runs the job (SQLite lets go of the interpreter lock) than running it itself. That
        connection never waits: ``busy_timeout`` is 0, so ``BEGIN IMMEDIATE`` either takes the
        file's write lock at once or fails (another worker holds it), and then the job goes to the
        writer thread like any other. It never checkpoints the WAL either (the writer's commits
        do), and in ``strict`` mode, where every commit is an fsync, every job goes to the writer.
        The lock is the same one the writer and every other worker take, so limits stay exact.
        """
        if self.durability == "batched" and not self._closed and self.writer_idle():
            ran, result = self._write_now(job)
            if ran:
                return cast(T, result)
        return await self.write(job)

    def _write_now(self, job: Job[T]) -> tuple[bool, T | None]:
        """Run ``job`` in a transaction of the loop's own connection, begun and committed on the
        driver itself: SQLAlchemy's transaction objects and events took about as long as SQLite's
        BEGIN and COMMIT (a limit check runs one per call). A job that executes through SQLAlchemy
        joins the transaction (``_on_begin`` finds it open) and is committed through SQLAlchemy."""
        conn = self._now
        if conn is None:
            conn = self._now = self._connect_now()
        driver = self._now_driver
        try:
            driver.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:  # SQLITE_BUSY, or an extended BUSY_*
                return False, None  # another writer holds the file: queue the job instead
            self._drop_now(conn)
            raise _wrapped("BEGIN IMMEDIATE", exc) from exc
        try:
            result = job(conn)
        except BaseException as exc:
            if self._roll_back_now(conn, driver):  # nothing of the job is kept
                self._now = self._after_failure(conn, exc)  # a broken connection is replaced next time
            else:
                self._drop_now(conn)  # still in the transaction: a fresh connection next time
            raise
        try:
            if conn.in_transaction():
                conn.commit()  # the job executed through SQLAlchemy, which joined the transaction
            else:
                driver.execute("COMMIT")
        except BaseException as exc:
            self._roll_back_now(conn, driver)
            self._drop_now(conn)  # a failed commit (a full disk, an I/O error): a fresh connection next time
            if isinstance(exc, sqlite3.Error):
                raise _wrapped("COMMIT", exc) from exc
            raise
        return True, result

    @staticmethod
    def _roll_back_now(conn: Connection, driver: Any) -> bool:
        """Roll the loop connection's transaction back; whether it is out of it."""
        with contextlib.suppress(Exception):
            if conn.in_transaction():
                conn.rollback()
        with contextlib.suppress(Exception):
            if driver.in_transaction:
                driver.execute("ROLLBACK")
        try:
            return not driver.in_transaction
        except Exception:
            return False  # closed or broken

    def _drop_now(self, conn: Connection) -> None:
        """Discard the loop's connection (SQLite rolls back what it held); the next job opens
        another. A test checks that no pool slot is lost to it."""
        self._now = None
        with contextlib.suppress(Exception):
            conn.info.pop(WRITER_MARK, None)
            conn.invalidate()
        with contextlib.suppress(Exception):
            conn.close()

    def prepare_writer(self, conn: Connection) -> None:
        # The checkpointer thread folds the WAL back (see _checkpoint_forever); a checkpoint run
        # by a commit of the writer's kept every job queued behind that commit waiting for it.
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA wal_autocheckpoint = 0")

    def _checkpoint_forever(self) -> None:
        """Fold the WAL back into the database file, on a thread and connection of its own, at
        most every :data:`CHECKPOINT_INTERVAL_SECONDS` while it is being written.

        SQLite runs a checkpoint inside the commit that takes the WAL over 1,000 pages, and here
        that was the writer's: an audit batch's commit took several milliseconds longer, and a
        limit reservation queued behind it (the loop runs one itself only while the writer is
        idle) waited them out. A ``PASSIVE`` checkpoint takes no write lock: the writer and the
        loop's connection keep committing meanwhile, and the thread lets go of the interpreter
        lock while SQLite works. Another process on the file (a second worker) runs its own; one
        that finds another checkpoint running tries again next time."""
        wal = self._wal
        raw: Any = None
        seen: tuple[int, int] | None = None
        while not self._checkpointer_stop.wait(CHECKPOINT_INTERVAL_SECONDS):
            try:
                info = wal.stat()
                written = (info.st_mtime_ns, info.st_size)
                if written == seen:
                    continue  # nothing written since the last checkpoint
                if raw is None:
                    raw = self.engine.raw_connection()
                cursor = raw.cursor()
                try:
                    busy, frames, done = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                finally:
                    cursor.close()
                self.checkpoints += 1
                # Readers that still need older frames, or another checkpoint running: next time.
                if not busy and done >= frames:
                    seen = written
            except FileNotFoundError:
                continue  # no WAL yet
            except Exception:
                log.exception("checkpointing %s failed; retrying", self.path)
                if raw is not None:
                    with contextlib.suppress(Exception):
                        raw.invalidate()
                    raw = None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.close()

    def _connect_now(self) -> Connection:
        conn = self.engine.connect()
        conn.info[WRITER_MARK] = True  # BEGIN IMMEDIATE, as the writer's
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA busy_timeout = 0")
        driver.execute("PRAGMA wal_autocheckpoint = 0")
        self._now_driver = driver
        return conn

    def close_sync(self, timeout: float = 5.0) -> None:
        self._checkpointer_stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout)
        super().close_sync(timeout)  # from here on write_short queues (and is refused: closed)
        now, self._now = self._now, None
        if now is not None:
            now.info.pop(WRITER_MARK, None)
            with contextlib.suppress(Exception):
                now.close()

    def after_open(self) -> None:
        for file in self.files():
            with contextlib.suppress(OSError):
                file.chmod(FILE_MODE)
        self._checkpointer = threading.Thread(
            target=self._checkpoint_forever, name="helio-store-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file and truncate it (tests, backups)."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.close()
        finally:
            raw.close()

    def _create_file(self) -> None:
        # Create the file (and the WAL files SQLite derives from its mode) owner-only from the start.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            os.close(fd)
            self.path.chmod(FILE_MODE)
        except OSError as exc:
            raise StoreError(f"cannot create the audit database {self.path}: {exc.strerror}") from None


def _wrapped(statement: str, exc: sqlite3.Error) -> StatementError:
    """A driver error as SQLAlchemy would have raised it (what the store's callers catch)."""
    return DBAPIError.instance(statement, None, exc, sqlite3.Error)


def sqlite_driver(conn: Connection) -> Any | None:
    """The ``sqlite3`` connection under ``conn``, or ``None`` on another database.

    For the fixed statements of a hot path (a limit check, an audit batch): sent to it directly,
    inside the transaction SQLAlchemy began on it (``BEGIN IMMEDIATE``), they skip SQLAlchemy's
    execution context, which cost more per statement than SQLite (~37 against ~8 us) on a
    thread that shares the GIL with the event loop. ``sqlite3`` takes the same ``:name``
    parameters as SQLAlchemy's ``text()``.
    """
    if conn.dialect.name != "sqlite":
        return None
    return conn.connection.driver_connection


def _factory(url: str, durability: Durability) -> SqliteStore:
    return SqliteStore(url, durability=durability)


register_backend("sqlite", _factory)
