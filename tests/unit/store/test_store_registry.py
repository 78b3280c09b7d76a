from pathlib import Path

import pytest

from helio_proxy.config.sections import AuditConfig
from helio_proxy.config.store import StoreConfig
from helio_proxy.store import StoreError, backends, create_store, register_backend, store_url
from helio_proxy.store.base import Durability, Store
from helio_proxy.store.postgres import PostgresStore, driver_url
from helio_proxy.store.sqlite import SqliteStore


def test_the_built_in_backends_are_registered_by_url_scheme() -> None:
    assert {"sqlite", "postgresql", "postgres"} <= set(backends())
    assert isinstance(create_store("sqlite:///x.db"), SqliteStore)
    assert isinstance(create_store("postgresql://u@h/db"), PostgresStore)
    assert isinstance(create_store("postgresql+psycopg://u@h/db"), PostgresStore)


def test_a_third_party_backend_registers_the_same_way(tmp_path: Path) -> None:
    seen: list[tuple[str, Durability]] = []

    def factory(url: str, durability: Durability) -> Store:
        seen.append((url, durability))
        return SqliteStore(f"sqlite:///{tmp_path / 'third.db'}", durability=durability)

    register_backend("thirdparty", factory)
    store = create_store("thirdparty://anything", durability="strict")
    assert isinstance(store, SqliteStore)
    assert seen == [("thirdparty://anything", "strict")]


def test_an_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(StoreError, match=r"no store backend for 'mysql'.*sqlite"):
        create_store("mysql://h/db")


def test_the_default_store_is_the_sqlite_file_at_audit_path() -> None:
    assert store_url(AuditConfig(), StoreConfig()) == "sqlite:///./helio-audit.db"
    url = "postgresql://helio@db/helio"
    assert store_url(AuditConfig(), StoreConfig(url=url)) == url


def test_a_postgres_url_is_shown_as_its_scheme_host_and_port_only() -> None:
    store = create_store("postgresql://helio:hunter2@db.internal:5432/helio?password=hunter3")
    assert store.description == "postgresql://db.internal:5432"


def test_postgres_urls_use_the_psycopg3_driver() -> None:
    assert driver_url("postgresql://h/db") == "postgresql+psycopg://h/db"
    assert driver_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert driver_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"


def test_a_sqlite_store_needs_a_file() -> None:
    with pytest.raises(StoreError, match="file path"):
        create_store("sqlite://")
