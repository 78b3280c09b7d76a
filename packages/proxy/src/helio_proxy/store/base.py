"""What every store backend offers, and the conventions all of them share.

A store is a SQL database reached through SQLAlchemy. Writes are *jobs* (a function of a
connection) run one at a time, in transactions, by the store's writer; reads are jobs run on a
small thread pool. Nothing here waits on the event loop: the async methods hand the work to
threads, except that :meth:`Store.write_short` may run a short job at once where the database's
write lock is free (it never waits for it), and :meth:`Store.write_statement` may send one
statement from the loop on a non-blocking connection.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import Connection

from helio_proxy.errors import StartupError

T = TypeVar("T")

Job = Callable[[Connection], T]
"""A unit of database work; a write job runs inside a transaction (alone, or with the write jobs
queued beside it where the backend groups them: it must touch only the database, since a failed
group is rolled back and each of its jobs runs again alone)."""

T_co = TypeVar("T_co", covariant=True)


class OneStatement(Protocol[T_co]):
    """A write that is exactly one statement (:meth:`Store.write_statement`)."""

    @property
    def sql(self) -> str:
        """The statement, with psycopg's ``%(name)s`` parameters (PostgreSQL)."""
        ...

    @property
    def params(self) -> Mapping[str, Any]: ...

    def finish(self, row: Sequence[Any] | None) -> T_co:
        """The result, from the statement's first row."""
        ...

    def __call__(self, conn: Connection) -> T_co:
        """Run it on ``conn`` (a write job, in the caller's transaction)."""
        ...


Durability = Literal["batched", "strict"]
"""``batched``: commits may be lost to a power cut (SQLite ``synchronous=NORMAL``); ``strict``:
every commit is flushed to stable storage before it is acknowledged (``synchronous=FULL``)."""


class StoreError(StartupError):
    """The store could not be opened or migrated (bad URL, unreachable server, newer schema...)."""


class Store(Protocol):
    """A governance database. Backends register a factory per URL scheme (see ``registry``)."""

    @property
    def description(self) -> str:
        """Where the data lives, safe to print (a file path, or a URL's scheme, host and port:
        :func:`~helio_proxy.url_display.display_url`)."""
        ...

    @property
    def dialect(self) -> str:
        """SQLAlchemy dialect name (``sqlite``, ``postgresql``, ...)."""
        ...

    def open_sync(self) -> None:
        """Connect, apply pending migrations, start the writer. Raises :class:`StoreError`."""
        ...

    async def open(self) -> None:
        """:meth:`open_sync` off the event loop."""
        ...

    def submit(self, job: Job[T]) -> Future[T]:
        """Queue a write job (thread-safe, never blocks); the future settles once it committed."""
        ...

    async def write(self, job: Job[T]) -> T:
        """Run a write job and wait for its commit."""
        ...

    async def write_short(self, job: Job[T]) -> T:
        """Run a short write job a call waits on (a limit reservation: a few statements).

        Like :meth:`write`, except that a backend whose write lock can be taken without waiting
        may run it at once on the calling thread (SQLite in ``batched`` mode, when no other
        writer holds the file): the job never waits for a lock on the event loop, and the call
        saves the two thread hand-offs."""
        ...

    async def write_statement(self, statement: OneStatement[T]) -> T:
        """Run a write that is exactly one statement (a limit reservation on PostgreSQL).

        Like :meth:`write_short`, except that a backend where each step costs a round trip sends
        it alone, without BEGIN and COMMIT (one statement is its own transaction) and from the
        event loop itself, on a connection of its own that waits without blocking (PostgreSQL):
        no thread hand-offs either. Elsewhere it runs as ``statement(conn)`` in a short write."""
        ...

    async def prepare_statements(self) -> None:
        """Open what :meth:`write_statement` sends on (PostgreSQL: the loop's connection), so the
        first call does not wait for it. Best effort: a failure is logged, and the first
        statement tries again."""
        ...

    def change_stamp(self) -> Hashable | None:
        """A cheap value that differs from an earlier one whenever the database may have been
        written since (by any process), for a poller to skip reads of a database nobody wrote;
        ``None`` when the backend cannot tell (read every time)."""
        ...

    def read_sync(self, job: Job[T]) -> T:
        """Run a read job on the calling thread (CLI, tests)."""
        ...

    async def read(self, job: Job[T]) -> T:
        """Run a read job on the reader pool."""
        ...

    def close_sync(self, timeout: float = 5.0) -> None:
        """Finish queued writes (waiting at most ``timeout`` seconds), then disconnect."""
        ...

    async def close(self) -> None:
        """:meth:`close_sync` off the event loop."""
        ...


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How every time is stored: fixed-width UTC text, so text order is time order."""


def time_text(moment: datetime) -> str:
    """``moment`` as stored (naive datetimes are taken as UTC).

    ``isoformat`` writes :data:`TIME_FORMAT`'s text for years from 1000 on, in about half of
    ``strftime``'s time (1.9 against 2.9 µs here; every audit record and limit charge takes one)."""
    if moment.tzinfo is not None:
        if moment.tzinfo is not UTC:
            moment = moment.astimezone(UTC)
        if moment.year >= 1000:
            return moment.isoformat(timespec="microseconds")[:-6] + "Z"  # without "+00:00"
    elif moment.year >= 1000:
        return moment.isoformat(timespec="microseconds") + "Z"
    return moment.strftime(TIME_FORMAT)  # strftime does not pad a year under 1000 to four digits


def parse_time_text(value: str) -> datetime:
    """A stored time back as an aware UTC datetime.

    ``fromisoformat`` reads :data:`TIME_FORMAT` (Python 3.11 takes the ``Z``) about six times faster
    than ``strptime``; a limit check reads several stored times per call."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
