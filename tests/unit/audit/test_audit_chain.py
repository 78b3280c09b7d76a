import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, text

from helio_proxy.audit import chain
from helio_proxy.audit.chain import (
    GENESIS_HASH,
    SigningKeyError,
    append_rows,
    load_private_key,
    load_public_key,
)
from helio_proxy.audit.records import ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.audit.verify import verify_chain
from helio_proxy.store import Store, create_store
from helio_proxy.store.sqlite import sqlite_driver
from helio_proxy.store.testing import Backend, store_url_for

START = datetime(2026, 3, 1, tzinfo=UTC)


def _write(
    store: Store, count: int, *, signer: Ed25519PrivateKey | None = None, chained: bool = True
) -> list[str]:
    builder = RowBuilder(Redactor())
    records = [
        ToolCallRecord(timestamp=START + timedelta(seconds=i), tool_name=f"tool_{i}", tool_input={"i": i})
        for i in range(count)
    ]
    rows = [builder.build(r, "2026-03-01T00:00:00.000000Z") for r in records]
    store.submit(lambda c: append_rows(c, rows, chained=chained, signer=signer)).result(timeout=10)
    return [str(r.id) for r in records]


def _rows(tool: str, inputs: list[dict[str, object]]) -> list[dict[str, object]]:
    """Built rows of one ``tool``'s calls, one per input, all at :data:`START`."""
    builder = RowBuilder(Redactor())
    created = "2026-03-01T00:00:00.000000Z"
    return [
        builder.build(ToolCallRecord(timestamp=START, tool_name=tool, tool_input=args), created)
        for args in inputs
    ]


def _execute(store: Store, sql: str, **params: object) -> None:
    store.submit(lambda c: c.execute(text(sql), params)).result(timeout=10)


def test_each_record_links_to_its_predecessor_and_verification_counts_them(store: Store) -> None:
    _write(store, 3)
    _write(store, 2)
    rows = store.read_sync(
        lambda c: c.execute(text("SELECT seq, prev_hash, hash FROM audit_records ORDER BY seq")).all()
    )
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, 5))
    report = verify_chain(store)
    assert report.ok
    assert report.verified == 5


def test_a_group_larger_than_one_insert_lands_every_value_in_its_column(store: Store) -> None:
    """A group is inserted in statements of at most 50 rows: 123 rows take three."""
    ids = _write(store, 123)
    rows = store.read_sync(
        lambda c: c.execute(
            text("SELECT seq, id, tool_name, tool_input, timestamp FROM audit_records ORDER BY seq")
        ).all()
    )
    assert [r.seq for r in rows] == list(range(1, 124))
    assert [r.id for r in rows] == ids
    for index in (0, 49, 50, 99, 100, 122):
        assert rows[index].tool_name == f"tool_{index}"
        assert rows[index].tool_input == f'{{"i":{index}}}'
        assert rows[index].timestamp.startswith(
            (START + timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%S")
        )
    report = verify_chain(store)
    assert report.ok
    assert report.verified == 123


def test_sqlite_inserts_keep_pace_while_the_event_loop_thread_holds_the_interpreter(tmp_path: Path) -> None:
    """A thread that runs Python all the time (a saturated event loop) gets the interpreter lock
    back only every switch interval (5 ms) after another thread let go of it. Inserting row by row
    (``executemany``) lets go once per row, so 1,000 rows took about 5 s and the batched audit fell
    behind a busy proxy (about 200 records/s committed under 3,000 calls/s) until its queue was full
    and records were dropped; one multi-row INSERT per 50 rows lets go 20 times."""
    store = create_store(f"sqlite:///{tmp_path / 'busy.db'}")
    store.open_sync()
    try:
        rows = _rows("echo", [{"i": i} for i in range(1000)])
        started = time.monotonic()
        written = store.submit(lambda c: append_rows(c, rows))
        spins = 0
        while not written.done() and time.monotonic() - started < 30:
            spins += sum(range(200))  # Python bytecode, never letting go of the lock by itself
        elapsed = time.monotonic() - started
        assert written.result(timeout=0).seq == 1000
        assert elapsed < 2.0, f"1,000 rows took {elapsed:.2f} s beside a busy thread"
    finally:
        store.close_sync()


@pytest.mark.parametrize(
    ("count", "step_pause", "statements", "yields"),
    [
        (50, 0.0, [10] * 5, 4 + 5),
        (7, 0.0, [7], 0 + 1),
        (51, 0.0, [50, 1], 0 + 2),
        (120, 0.0, [50, 50, 20], 0 + 3),
        (50, None, [50], 0 + 1),
        (50, 0.0005, [10] * 5, 4 + 5),
        (120, 0.0005, [50, 50, 20], 0 + 3),
    ],
)
def test_sqlite_inserts_a_usual_batch_in_short_steps_and_a_backlog_in_long_ones(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    count: int,
    step_pause: float | None,
    statements: list[int],
    yields: int,
) -> None:
    """With a ``step_pause`` (batched audit), a batch of up to 50 rows goes in INSERTs of 10 rows,
    and sleeps that long (0: lets go of the GIL) every 10 rows while it is hashed (short steps,
    which a call arriving one at a time does not wait out); a larger one, a writer catching up,
    in INSERTs of 50, hashed without a break and with no pause. Without (strict audit, where calls
    wait for the commit), long steps only."""
    sent: list[str] = []
    slept: list[float] = []

    class Recording:
        def __init__(self, driver: Any) -> None:
            self._driver = driver

        def execute(self, sql: str, *args: Any) -> Any:
            sent.append(sql)
            return self._driver.execute(sql, *args)

    def recording_driver(conn: Connection) -> Recording | None:
        driver = sqlite_driver(conn)
        return Recording(driver) if driver is not None else None

    monkeypatch.setattr(chain, "sqlite_driver", recording_driver)
    monkeypatch.setattr(chain, "time", SimpleNamespace(sleep=slept.append))
    store = create_store(f"sqlite:///{tmp_path / 'steps.db'}")
    store.open_sync()
    try:
        rows = _rows("echo", [{"i": i} for i in range(count)])
        written = store.submit(lambda c: append_rows(c, rows, step_pause=step_pause))
        assert written.result(timeout=10).seq == count
        inserts = [sql for sql in sent if sql.startswith("INSERT INTO audit_records ")]
        assert [sql.count("), (") + 1 for sql in inserts] == statements
        # while hashing, then after each INSERT; a backlog's steps only let go of the GIL
        short = step_pause is not None and count <= 50
        assert slept == [step_pause if short else 0] * yields
        assert verify_chain(store).verified == count
    finally:
        store.close_sync()


@pytest.mark.parametrize("count", [50, 200])
def test_sqlite_indexes_a_transactions_records_for_search_as_one_segment(tmp_path: Path, count: int) -> None:
    """The word index's rowid is the seq negated; FTS5 starts a new segment (and merges them) each
    time a rowid is not above the last, so records inserted in seq order cost one segment each:
    1,659 rows changed for 200 records, against 625 newest first (the record, its document size
    and the index's own rows). A batch sent in steps of 10 rows is still one segment."""
    store = create_store(f"sqlite:///{tmp_path / 'words.db'}")
    store.open_sync()
    try:
        rows = _rows("refund", [{"order": f"ORD-{i}"} for i in range(count)])

        def write(conn: Connection) -> int:
            driver = conn.connection.driver_connection
            before = driver.total_changes
            append_rows(conn, rows, step_pause=0.0)
            return int(driver.total_changes - before)

        changed = store.submit(write).result(timeout=10)
        assert changed < 4 * len(rows), f"{changed} rows changed to write {len(rows)} records"
        newest = store.read_sync(
            lambda c: c.execute(
                text(
                    "SELECT -rowid FROM audit_records_words WHERE audit_records_words MATCH 'ord' "
                    "ORDER BY rowid LIMIT 3"
                )
            ).all()
        )
        assert [seq for (seq,) in newest] == [count, count - 1, count - 2]
        assert verify_chain(store).verified == count
    finally:
        store.close_sync()


def test_an_empty_store_verifies(store: Store) -> None:
    assert verify_chain(store).ok


def test_an_edited_column_is_reported_with_that_record_id(store: Store) -> None:
    ids = _write(store, 5)
    _execute(store, "UPDATE audit_records SET tool_input = :v WHERE id = :id", v='{"i":3}', id=ids[2])
    report = verify_chain(store)
    assert report.problem is not None
    assert (report.problem.record_id, report.problem.kind) == (ids[2], "altered")
    assert report.verified == 2


def test_a_deleted_record_is_reported_as_missing_at_the_next_one(store: Store) -> None:
    ids = _write(store, 4)
    _execute(store, "DELETE FROM audit_records WHERE id = :id", id=ids[1])
    problem = verify_chain(store).problem
    assert problem is not None
    assert (problem.record_id, problem.kind) == (ids[2], "missing")


def test_records_removed_from_the_end_are_reported_against_the_chain_head(store: Store) -> None:
    ids = _write(store, 3)
    _execute(store, "DELETE FROM audit_records WHERE id = :id", id=ids[2])
    problem = verify_chain(store).problem
    assert problem is not None
    assert problem.kind == "truncated"


def test_a_replaced_hash_breaks_the_next_link(store: Store) -> None:
    ids = _write(store, 3)
    _execute(store, "UPDATE audit_records SET prev_hash = :h WHERE id = :id", h="f" * 64, id=ids[1])
    problem = verify_chain(store).problem
    assert problem is not None
    assert (problem.record_id, problem.kind) == (ids[1], "broken_link")


def test_records_written_without_the_chain_fail_verification(store: Store) -> None:
    ids = _write(store, 2, chained=False)
    problem = verify_chain(store).problem
    assert problem is not None
    assert (problem.record_id, problem.kind) == (ids[0], "unchained")


def test_signed_records_verify_with_the_public_key_and_fail_with_another(store: Store) -> None:
    key = Ed25519PrivateKey.generate()
    _write(store, 3, signer=key)
    report = verify_chain(store, key.public_key())
    assert report.ok
    assert report.signed == 3
    other = verify_chain(store, Ed25519PrivateKey.generate().public_key()).problem
    assert other is not None
    assert other.kind == "bad_signature"


def test_a_stripped_signature_after_signed_records_is_reported(store: Store) -> None:
    key = Ed25519PrivateKey.generate()
    ids = _write(store, 3, signer=key)
    _execute(store, "UPDATE audit_records SET signature = NULL WHERE id = :id", id=ids[2])
    problem = verify_chain(store, key.public_key()).problem
    assert problem is not None
    assert (problem.record_id, problem.kind) == (ids[2], "unsigned")


@pytest.mark.postgres
def test_replicas_sharing_postgres_extend_one_chain(tmp_path: Path) -> None:
    """Two stores on one database (two proxies) take turns on the chain head."""
    backend: Backend = "postgres"
    with store_url_for(backend, tmp_path) as url:
        replicas = [create_store(url), create_store(url)]
        for replica in replicas:
            replica.open_sync()
        try:
            builder = RowBuilder(Redactor())
            futures = []
            for i in range(40):
                rows = [
                    builder.build(ToolCallRecord(timestamp=START, tool_name=f"r{i}"), "c") for _ in range(5)
                ]

                def job(c: Connection, rows: list[dict[str, object]] = rows) -> object:
                    return append_rows(c, rows)

                futures.append(replicas[i % 2].submit(job))
            for future in futures:
                future.result(timeout=30)
            report = verify_chain(replicas[0])
            assert report.ok
            assert report.verified == 200
        finally:
            for replica in replicas:
                replica.close_sync()


def test_signing_keys_load_from_a_file_or_pem_text(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "audit.pem"
    path.write_text(pem)
    assert load_private_key(str(path)).public_key() == key.public_key()
    assert load_private_key(pem).public_key() == key.public_key()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert load_public_key(public_pem) == key.public_key()
    assert load_public_key(str(path)) == key.public_key()
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_private_key(str(tmp_path / "missing.pem"))
