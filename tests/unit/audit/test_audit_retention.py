from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from helio_proxy.audit.chain import append_rows
from helio_proxy.audit.clock import ManualClock
from helio_proxy.audit.records import ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.retention import RetentionSweeper
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.audit.verify import verify_chain
from helio_proxy.store import Store, time_text

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = 86400


def _write_ages(store: Store, ages_in_days: list[float]) -> list[str]:
    builder = RowBuilder(Redactor())
    records = [
        ToolCallRecord(timestamp=NOW - timedelta(days=age), tool_name=f"t{i}")
        for i, age in enumerate(ages_in_days)
    ]
    rows = [builder.build(r, time_text(NOW)) for r in records]
    store.submit(lambda c: append_rows(c, rows)).result(timeout=10)
    return [str(r.id) for r in records]


def _ids(store: Store) -> list[str]:
    return [
        r[0]
        for r in store.read_sync(lambda c: c.execute(text("SELECT id FROM audit_records ORDER BY seq")).all())
    ]


async def test_records_older_than_retention_are_deleted_and_the_rest_still_verifies(store: Store) -> None:
    ids = _write_ages(store, [120, 100, 95, 10, 1])
    result = await RetentionSweeper(store, 90 * DAY, clock=ManualClock(NOW)).sweep()
    assert result.records == 3
    assert _ids(store) == ids[3:]
    report = verify_chain(store)
    assert report.ok
    assert report.verified == 2


async def test_deletion_stops_at_the_first_young_record_so_the_chain_stays_whole(store: Store) -> None:
    ids = _write_ages(store, [120, 1, 100, 2])  # an old record written after a young one
    await RetentionSweeper(store, 90 * DAY, clock=ManualClock(NOW)).sweep()
    assert _ids(store) == ids[1:]
    assert verify_chain(store).ok


async def test_sweeping_everything_leaves_a_chain_that_new_records_extend(store: Store) -> None:
    _write_ages(store, [200, 150])
    await RetentionSweeper(store, 90 * DAY, clock=ManualClock(NOW)).sweep()
    assert _ids(store) == []
    assert verify_chain(store).ok
    _write_ages(store, [0])
    assert verify_chain(store).verified == 1


async def test_ledger_rows_follow_audit_retention(store: Store) -> None:
    old, young = time_text(NOW - timedelta(days=91)), time_text(NOW - timedelta(days=1))

    def seed(conn: object) -> None:
        for i, at in enumerate([old, young]):
            conn.execute(  # type: ignore[attr-defined]
                text(
                    "INSERT INTO budget_events (id, budget_name, epoch, bucket_key, amount, currency, occurred_at) "
                    "VALUES (:id, 'b', 1, 'k', '1.50', 'GBP', :at)"
                ),
                {"id": f"b{i}", "at": at},
            )
            conn.execute(  # type: ignore[attr-defined]
                text("INSERT INTO limit_events VALUES (:id, 'k', '1', :at, NULL)"), {"id": f"l{i}", "at": at}
            )

    store.submit(seed).result(timeout=10)
    result = await RetentionSweeper(store, 90 * DAY, clock=ManualClock(NOW)).sweep()
    assert result.ledger_rows == 2
    left = store.read_sync(
        lambda c: (
            c.execute(text("SELECT id FROM budget_events")).scalars().all(),
            c.execute(text("SELECT id FROM limit_events")).scalars().all(),
        )
    )
    assert left == (["b1"], ["l1"])


async def test_a_large_sweep_goes_in_chunks_and_leaves_the_same_chain(store: Store) -> None:
    """Each chunk is a transaction of its own, so other writes (audit batches, limit
    reservations) take turns with a sweep instead of waiting for all of it."""
    ids = _write_ages(store, [200.0] * 23 + [10.0] * 3)
    transactions: list[int] = []
    sweeper = RetentionSweeper(store, 90 * DAY, clock=ManualClock(NOW), chunk=5)
    write = store.write

    async def counted(job):  # type: ignore[no-untyped-def]
        result = await write(job)
        transactions.append(result.records)
        return result

    store.write = counted  # type: ignore[method-assign]
    try:
        result = await sweeper.sweep()
    finally:
        del store.write  # type: ignore[attr-defined]
    assert transactions == [5, 5, 5, 5, 3]
    assert result.records == 23
    assert _ids(store) == ids[23:]
    report = verify_chain(store)
    assert report.ok
    assert report.verified == 3
