"""The shared backend: PostgreSQL through psycopg 3 (``store.url: postgresql://user@host/db``).

Every replica writes through its own writer thread and connection; replicas are serialized where
it matters by row locks (the audit chain head) and an advisory lock (migrations). ``batched``
durability turns ``synchronous_commit`` off for the writer connection (a server crash can lose
the last few hundred milliseconds of commits; a proxy crash cannot); ``strict`` keeps it on.

Options in the URL are passed to psycopg, e.g. ``?options=-csearch_path%3Dhelio`` for a schema.
"""

from __future__ import annotations

from typing import Any, Final, Generic, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from helio_proxy.store.base import Durability, Job
from helio_proxy.store.registry import register_backend
from helio_proxy.store.sql import READER_THREADS, SqlStore
from helio_proxy.url_display import display_url

MIGRATION_LOCK_KEY: Final = 0x48454C494F  # "HELIO"
"""Advisory lock key held while migrations run, so replicas starting together migrate once."""

LOCK_TIMEOUT: Final = "30s"
"""The writer gives up waiting for a row lock held by another replica after this long."""

T = TypeVar("T")

CONNECTION_DEFAULTS: Final = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 5_000,
}
"""libpq settings that bound how long a database that went away can hold a call: a connect gives
up after 5 s, and a connection whose server stopped answering (a cut network, a dead host) is
declared dead after about 5 s (``tcp_user_timeout``, in ms; keepalives cover idle pooled
connections), so the call fails closed instead of waiting for TCP's own timeout (minutes). A
parameter of the same name in ``store.url`` wins."""


def driver_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` → the psycopg 3 SQLAlchemy URL."""
    scheme, _, rest = url.partition("://")
    if "+" in scheme:
        return url
    return f"postgresql+psycopg://{rest}"


class PostgresStore(SqlStore):
    """A :class:`SqlStore` on a PostgreSQL database."""

    dialect = "postgresql"

    def __init__(self, url: str, *, durability: Durability = "batched") -> None:
        super().__init__(driver_url(url), durability=durability)

    @property
    def description(self) -> str:
        return display_url(str(make_url(self.url).set(drivername="postgresql")))

    def create_engine(self) -> Engine:
        given = make_url(self.url).query
        defaults = {name: value for name, value in CONNECTION_DEFAULTS.items() if name not in given}
        return create_engine(
            self.url,
            pool_size=READER_THREADS,
            max_overflow=2,
            # A pooled connection is checked before use, so a server restart costs the first call
            # after it nothing: dead connections are replaced, not handed out.
            pool_pre_ping=True,
            connect_args={"application_name": "helio", **defaults},
        )

    async def write_statement(self, job: Job[T]) -> T:
        return await self.write(_OneStatement(job))

    def run_job(self, conn: Connection, job: Job[T]) -> T:
        if not isinstance(job, _OneStatement):
            return super().run_job(conn, job)
        # Autocommit for this job only: psycopg then sends no BEGIN before the statement, and
        # the commit below finds no transaction open (no round trip). The statement is its own
        # transaction, so it commits or fails whole.
        driver: Any = conn.connection.driver_connection
        driver.autocommit = True
        try:
            with conn.begin():
                return cast(T, job(conn))
        finally:
            driver.autocommit = False

    def prepare_writer(self, conn: Connection) -> None:
        synchronous = "on" if self.durability == "strict" else "off"
        conn.execute(text(f"SET synchronous_commit TO {synchronous}"))
        conn.execute(text(f"SET lock_timeout TO '{LOCK_TIMEOUT}'"))

    def migration_lock(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


class _OneStatement(Generic[T]):
    """A write job that sends exactly one statement (see :meth:`PostgresStore.write_statement`)."""

    __slots__ = ("job",)

    def __init__(self, job: Job[T]) -> None:
        self.job = job

    def __call__(self, conn: Connection) -> T:
        return self.job(conn)


def _factory(url: str, durability: Durability) -> PostgresStore:
    return PostgresStore(url, durability=durability)


register_backend("postgresql", _factory)
register_backend("postgres", _factory)
