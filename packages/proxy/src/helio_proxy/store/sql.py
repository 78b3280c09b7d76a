"""A :class:`~helio_proxy.store.base.Store` on a SQLAlchemy engine: one writer thread, a reader pool.

The writer thread owns one connection and runs write jobs from a queue, in the order they were
submitted: one transaction each, or on SQLite (:attr:`SqlStore.group_writes`) the jobs that queued
up meanwhile together in one; on SQLite it is the only writer thread of the file (a limit
reservation may also run on the event loop's own connection: ``SqliteStore.write_short``). Reads
run on a small thread pool with their own pooled connections (WAL lets them proceed while the
writer commits). Backends subclass :class:`SqlStore` for the engine, per-connection settings and locks.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, TypeVar, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from helio_proxy.store.base import Durability, Job, OneStatement, StoreError
from helio_proxy.store.migrations import apply_migrations
from helio_proxy.url_display import display_url

T = TypeVar("T")

log = logging.getLogger("helio.store")

READER_THREADS: Final = 4
"""Threads (and pooled connections) serving reads."""

WRITER_MARK: Final = "helio_writer"
"""Key in a connection's ``info`` marking the writer's connection (SQLite begins it IMMEDIATE)."""

MAX_GROUP: Final = 64
"""Most write jobs that share one transaction when they queue up (backends that group)."""

_STOP: Final = object()

_Item = tuple[Job[Any], "Future[Any]"]


class SqlStore:
    """Shared machinery of the SQL backends. Subclasses provide :meth:`create_engine`."""

    dialect: str = "sql"

    group_writes: bool = False
    """Run the write jobs that queued up meanwhile in one transaction (one BEGIN and one COMMIT).

    Only where that cannot deadlock: on SQLite the writer's ``BEGIN IMMEDIATE`` holds the whole
    database, so a group takes no lock a single job would not. On PostgreSQL two replicas' groups
    could take row locks in opposite orders, so each job keeps its own transaction there.
    """

    def __init__(self, url: str, *, durability: Durability = "batched") -> None:
        self.url = url
        self.durability: Durability = durability
        self._engine: Engine | None = None
        self._jobs: queue.SimpleQueue[tuple[Job[Any], Future[Any]] | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._closed = False
        self._writing = False
        """The writer thread is running jobs (read without a lock: a hint, see :meth:`writer_idle`)."""

    # -- for subclasses -----------------------------------------------------------------------

    @property
    def description(self) -> str:
        return display_url(self.url)

    def create_engine(self) -> Engine:
        raise NotImplementedError

    def prepare_writer(self, conn: Connection) -> None:
        """Per-connection settings of the writer connection (durability, lock timeouts)."""

    def migration_lock(self, conn: Connection) -> None:
        """Serialize concurrent migrations (called inside the migration transaction)."""

    def after_open(self) -> None:
        """Hook run once the schema is in place (file permissions, ...)."""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise StoreError("the store is not open")
        return self._engine

    def open_sync(self) -> None:
        try:
            self._engine = self.create_engine()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {self.description}: {_reason(exc)}") from None
        ready: Future[None] = Future()
        self._writer = threading.Thread(
            target=self._run_writer, args=(ready,), name="helio-store-writer", daemon=True
        )
        self._writer.start()
        try:
            ready.result()
            # Migrations are the writer's first job, so they take the same write lock as any write.
            self.submit(lambda conn: apply_migrations(conn, lock=self.migration_lock)).result()
        except StoreError:
            self.close_sync()
            raise
        except SQLAlchemyError as exc:
            self.close_sync()
            raise StoreError(f"cannot open the store at {self.description}: {_reason(exc)}") from None
        self.after_open()
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="helio-store-read")

    async def open(self) -> None:
        await asyncio.to_thread(self.open_sync)

    def close_sync(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._jobs.put(_STOP)
            self._writer.join(timeout)
            if self._writer.is_alive():
                log.error("the store writer did not finish within %.0fs; unwritten jobs are lost", timeout)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        if self._engine is not None:
            self._engine.dispose()

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, job: Job[T]) -> Future[T]:
        future: Future[T] = Future()
        if self._closed or self._writer is None:
            future.set_exception(StoreError("the store is closed"))
            return future
        self._jobs.put((job, future))
        return future

    async def write(self, job: Job[T]) -> T:
        return await asyncio.wrap_future(self.submit(job))

    async def write_short(self, job: Job[T]) -> T:
        return await self.write(job)

    async def write_statement(self, statement: OneStatement[T]) -> T:
        return await self.write_short(statement)

    async def prepare_statements(self) -> None:
        return None  # nothing to open: statements run as short writes

    def change_stamp(self) -> Hashable | None:
        return None  # a server database: no cheap way to tell

    def writer_idle(self) -> bool:
        """No write job is queued or running (a hint: the answer may be stale by the time it is used)."""
        return not self._writing and self._jobs.empty()

    def read_sync(self, job: Job[T]) -> T:
        with self.engine.connect() as conn:
            return job(conn)

    async def read(self, job: Job[T]) -> T:
        if self._readers is None:
            raise StoreError("the store is not open")
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_sync, job)

    def _run_writer(self, ready: Future[None]) -> None:
        conn: Connection | None = None
        try:
            conn = self._connect_writer()
        except SQLAlchemyError as exc:
            ready.set_exception(StoreError(f"cannot open the store at {self.description}: {_reason(exc)}"))
            return
        ready.set_result(None)
        stopping = False
        while not stopping:
            group, stopping = self._take_group()
            try:
                if len(group) > 1:
                    conn = self._run_group(conn, group)
                elif group:
                    conn = self._run_one(conn, group[0])
            finally:
                self._writing = False
        if conn is not None:
            conn.info.pop(WRITER_MARK, None)
            conn.close()

    def _take_group(self) -> tuple[list[_Item], bool]:
        """The next job and, when grouping, those queued behind it; whether to stop after them."""
        group: list[_Item] = []
        item = self._jobs.get()
        self._writing = True  # before the queue looks empty to writer_idle()
        while True:
            if item is _STOP:
                return group, True
            job, future = cast(_Item, item)
            if future.set_running_or_notify_cancel():
                group.append((job, future))
            if not self.group_writes or len(group) >= MAX_GROUP:
                return group, False
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return group, False

    def _run_one(self, conn: Connection | None, item: _Item) -> Connection | None:
        job, future = item
        try:
            if conn is None:
                conn = self._connect_writer()
            with conn.begin():
                result = job(conn)
        except BaseException as exc:
            future.set_exception(exc)
            return self._after_failure(conn, exc)
        future.set_result(result)
        return conn

    def _run_group(self, conn: Connection | None, group: list[_Item]) -> Connection | None:
        """All of ``group`` in one transaction; if any job (or the commit) fails, each alone.

        Results are handed out only after the commit, so a caller never sees a write that is
        then rolled back. A failure rolls the whole group back and every job runs again in its own
        transaction, in the same order: each then succeeds or fails exactly as it would have
        without grouping (the jobs only touch the database, which the rollback restored).
        """
        results: list[Any] = []
        try:
            if conn is None:
                conn = self._connect_writer()
            with conn.begin():
                for job, _future in group:
                    results.append(job(conn))
        except BaseException as exc:
            conn = self._after_failure(conn, exc)
            for item in group:
                conn = self._run_one(conn, item)
            return conn
        for (_job, future), result in zip(group, results, strict=True):
            future.set_result(result)
        return conn

    @staticmethod
    def _after_failure(conn: Connection | None, exc: BaseException) -> Connection | None:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated and conn is not None:
            conn.close()
            return None  # reconnect for the next job
        return conn

    def _connect_writer(self) -> Connection:
        conn = self.engine.connect()
        conn.info[WRITER_MARK] = True
        self.prepare_writer(conn)
        if conn.in_transaction():
            conn.commit()
        return conn


def _reason(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    text = str(original or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
