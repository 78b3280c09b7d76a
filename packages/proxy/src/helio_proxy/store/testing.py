"""Throwaway stores for tests, on both backends (used by Helio's own suites and by later parts').

PostgreSQL stores live in a fresh schema of the test database, dropped afterwards. The server is
``HELIO_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``); when it is
down, opening fails loudly: these helpers never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Literal

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from helio_proxy.store.base import Durability, Store
from helio_proxy.store.postgres import driver_url
from helio_proxy.store.registry import create_store

Backend = Literal["sqlite", "postgres"]
BACKENDS: Final[tuple[Backend, ...]] = ("sqlite", "postgres")

DEFAULT_TEST_POSTGRES_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_test_url() -> str:
    """The server and database test schemas are created in."""
    return os.environ.get("HELIO_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)


@contextmanager
def postgres_schema() -> Generator[str]:
    """Create a fresh schema; yield a store URL whose connections use it; drop it afterwards."""
    base = postgres_test_url()
    schema = f"helio_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(driver_url(base), pool_pre_ping=True)  # the server may restart meanwhile
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        try:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            admin.dispose()


@contextmanager
def store_url_for(backend: Backend, directory: Path) -> Generator[str]:
    """A URL for an empty store of ``backend`` (a file in ``directory``, or a fresh schema)."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'helio-audit.db'}"
        return
    with postgres_schema() as url:
        yield url


@contextmanager
def temporary_store(
    backend: Backend, directory: Path, *, durability: Durability = "batched"
) -> Generator[Store]:
    """An opened, empty store of ``backend``; closed (and its schema dropped) on exit."""
    with store_url_for(backend, directory) as url:
        store = create_store(url, durability=durability)
        store.open_sync()
        try:
            yield store
        finally:
            store.close_sync()
