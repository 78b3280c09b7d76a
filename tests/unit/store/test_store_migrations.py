import warnings
from pathlib import Path

import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SAWarning

from helio_proxy.store import Store, StoreError, create_store
from helio_proxy.store.migrations import MIGRATIONS, Migration, applied_migrations, apply_migrations
from helio_proxy.store.tables import GOVERNANCE_TABLES, SEARCH_ONLY_COLUMNS
from helio_proxy.store.testing import Backend, store_url_for


def test_opening_a_store_applies_every_named_migration_in_order(store: Store) -> None:
    names = store.read_sync(applied_migrations)
    assert names == [m.name for m in MIGRATIONS]
    assert names == sorted(names)


def test_reopening_a_store_applies_nothing_twice(backend: Backend, tmp_path: Path) -> None:
    with store_url_for(backend, tmp_path) as url:
        for _ in range(2):
            store = create_store(url)
            store.open_sync()
            try:
                count = store.read_sync(
                    lambda c: c.execute(text("SELECT count(*) FROM schema_migrations")).scalar()
                )
            finally:
                store.close_sync()
            assert count == len(MIGRATIONS)


def test_a_new_migration_is_applied_after_the_existing_ones(store: Store) -> None:
    extra = Migration("0099_test_extra", ("CREATE TABLE test_extra (id INTEGER PRIMARY KEY)",))

    def migrate(conn: Connection) -> list[str]:
        return apply_migrations(conn, lock=lambda _: None, migrations=(*MIGRATIONS, extra))

    assert store.submit(migrate).result() == ["0099_test_extra"]
    assert store.read_sync(applied_migrations)[-1] == "0099_test_extra"


def test_a_database_migrated_by_a_newer_version_is_refused(backend: Backend, tmp_path: Path) -> None:
    with store_url_for(backend, tmp_path) as url:
        store = create_store(url)
        store.open_sync()
        store.submit(
            lambda c: c.execute(
                text("INSERT INTO schema_migrations (name, applied_at) VALUES ('9999_future', 'x')")
            )
        ).result()
        store.close_sync()
        again = create_store(url)
        with pytest.raises(StoreError, match="9999_future"):
            again.open_sync()


def test_the_table_models_match_the_schema_the_migrations_build(store: Store) -> None:
    def columns(conn: Connection) -> dict[str, set[str]]:
        inspector = inspect(conn)
        return {t.name: {c["name"] for c in inspector.get_columns(t.name)} for t in GOVERNANCE_TABLES}

    built = store.read_sync(columns)
    search_only = SEARCH_ONLY_COLUMNS.get(store.dialect, {})
    for table in GOVERNANCE_TABLES:
        extra = search_only.get(table.name, frozenset())
        assert built[table.name] - extra == {c.name for c in table.columns}, table.name
        assert extra <= built[table.name], table.name


def test_the_chain_head_starts_at_the_genesis_hash(store: Store) -> None:
    row = store.read_sync(lambda c: c.execute(text("SELECT seq, head_hash FROM audit_chain")).one())
    assert tuple(row) == (0, "0" * 64)


def test_0013_drops_the_indexes_a_charge_no_longer_needs_and_the_rows_no_bucket_owns(
    backend: Backend, tmp_path: Path
) -> None:
    def indexes(conn: Connection) -> set[str]:
        inspector = inspect(conn)
        return {
            str(i["name"])
            for table in ("limit_events", "limit_buckets")
            for i in inspector.get_indexes(table)
        }

    with store_url_for(backend, tmp_path) as url:
        store = create_store(url)
        store.open_sync()

        def as_before_0013(conn: Connection) -> None:
            conn.execute(text("CREATE INDEX limit_events_occurred_at ON limit_events (occurred_at)"))
            if conn.dialect.name == "sqlite":
                conn.execute(
                    text("CREATE INDEX limit_buckets_last_activity ON limit_buckets (last_activity)")
                )
            conn.execute(text("DELETE FROM schema_migrations WHERE name = '0013_limit_events_by_bucket'"))
            conn.execute(
                text(
                    "INSERT INTO limit_buckets (bucket_key, kind, owner, version, scope, subject, started_at, "
                    "last_activity) VALUES ('rate:r:v:tool:t', 'rate', 'r', 'v', 'tool', 't', 'a', 'a')"
                )
            )
            for id_, key in (("kept", "rate:r:v:tool:t"), ("orphan", "rate:gone:v:tool:t")):
                conn.execute(
                    text(
                        "INSERT INTO limit_events (id, bucket_key, amount, occurred_at) VALUES (:id, :key, '1', 'a')"
                    ),
                    {"id": id_, "key": key},
                )

        store.submit(as_before_0013).result()
        store.close_sync()
        again = create_store(url)
        again.open_sync()
        try:
            assert "0013_limit_events_by_bucket" in again.read_sync(applied_migrations)
            left = again.read_sync(indexes)
            assert "limit_events_occurred_at" not in left
            assert "limit_buckets_last_activity" not in left
            assert "limit_events_bucket" in left
            ids = again.read_sync(lambda c: c.execute(text("SELECT id FROM limit_events")).scalars().all())
            assert ids == ["kept"]
        finally:
            again.close_sync()


def test_no_audit_index_is_the_leading_part_of_another(store: Store) -> None:
    """Each index costs every audit record an entry: one whose columns lead another index (the
    composite serves its lookups) or that no query can use (``origin`` is matched as a substring)
    is only cost. 0015 dropped six such indexes."""

    def indexes(conn: Connection) -> dict[str, tuple[str | None, ...]]:
        with warnings.catch_warnings():  # the expression index on the metadata's upstream
            warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
            found = inspect(conn).get_indexes("audit_records")
        return {str(i["name"]): tuple(i["column_names"]) for i in found if not i.get("unique")}

    found = store.read_sync(indexes)
    assert {"audit_records_tool_time", "audit_records_session_time", "audit_records_time_seq"} <= set(found)
    for name, columns in found.items():
        assert "origin" not in columns, name
        for other, other_columns in found.items():
            if other != name and None not in columns:  # None: an expression
                assert other_columns[: len(columns)] != columns, f"{other} serves {name}'s lookups"


def test_lookups_by_one_audit_column_still_use_an_index(tmp_path: Path) -> None:
    store = create_store(f"sqlite:///{tmp_path / 'audit.db'}")
    store.open_sync()
    try:
        for where, index in (
            ("tool_name = 'x'", "audit_records_tool_time"),
            ("session_id = 'x'", "audit_records_session_time"),
            ("policy_decision = 'deny'", "audit_records_decision_time"),
            ("block_reason = 'x'", "audit_records_reason_time"),
            ("timestamp < 'x'", "audit_records_time_seq"),
        ):
            plan = store.read_sync(
                lambda c, where=where: [
                    str(row[-1])
                    for row in c.execute(
                        text(f"EXPLAIN QUERY PLAN SELECT seq FROM audit_records WHERE {where}")  # noqa: S608 - fixed test text
                    )
                ]
            )
            assert any(
                f"USING COVERING INDEX {index}" in step or f"USING INDEX {index}" in step for step in plan
            ), (where, plan)
    finally:
        store.close_sync()
