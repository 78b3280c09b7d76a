import stat
from pathlib import Path

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
