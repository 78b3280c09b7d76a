"""The console's audit queries on both stores: every filter, keyset pages, word search, chain
status of one record, analytics."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from helio_proxy.audit import console
from helio_proxy.audit.chain import append_rows
from helio_proxy.audit.console import ConsoleFilter
from helio_proxy.audit.records import ApprovalResolutionRecord, ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.store import Store

T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def seeded(store: Store) -> Store:
    builder = RowBuilder(Redactor())
    records: list[Any] = []
    for n in range(12):
        records.append(
            ToolCallRecord(
                timestamp=T0 + timedelta(minutes=10 * n),
                tool_name="get_weather" if n % 3 else "refund_order",
                tool_input={"city": f"Oslo-{n}", "note": "urgent refund" if n % 4 == 0 else "plain"},
                session_id=f"s{n % 2}",
                agent_id="agent-a" if n < 6 else "agent-b",
                policy_decision="deny" if n % 5 == 0 else "allow",
                block_reason="policy_denied" if n % 5 == 0 else None,
                matched_rule="no-refunds" if n % 5 == 0 else None,
                metadata={"upstream": "pay" if n % 2 else "crm"},
                proxy_compute_ms=float(n),
                approval_wait_ms=1000.0 if n == 7 else None,
            )
        )
    records.append(
        ApprovalResolutionRecord(
            timestamp=T0 + timedelta(minutes=71),
            tool_name="get_weather",
            approval_status="approved",
            ticket_id="t1",
        )
    )
    rows = [builder.build(r, "c") for r in records]
    store.submit(lambda c: append_rows(c, rows)).result(timeout=10)
    return store


def _list(store: Store, **where: Any) -> list[dict[str, Any]]:
    records, _ = store.read_sync(lambda c: console.page(c, ConsoleFilter(**where), limit=500))
    return records


def _inputs(store: Store, **where: Any) -> list[str]:
    return [r["tool_input"]["city"] for r in _list(store, kind="tool_call", **where)]


@pytest.mark.parametrize(
    ("where", "cities"),
    [
        ({"tool": "refund_order"}, ["Oslo-9", "Oslo-6", "Oslo-3", "Oslo-0"]),
        ({"upstream": "pay"}, ["Oslo-11", "Oslo-9", "Oslo-7", "Oslo-5", "Oslo-3", "Oslo-1"]),
        ({"decision": "deny"}, ["Oslo-10", "Oslo-5", "Oslo-0"]),
        ({"reason": "policy_denied"}, ["Oslo-10", "Oslo-5", "Oslo-0"]),
        ({"rule": "no-refunds"}, ["Oslo-10", "Oslo-5", "Oslo-0"]),
        ({"session": "s0", "agent": "agent-b"}, ["Oslo-10", "Oslo-8", "Oslo-6"]),
        (
            {"since": T0 + timedelta(minutes=30), "until": T0 + timedelta(minutes=60)},
            ["Oslo-5", "Oslo-4", "Oslo-3"],
        ),
        ({"q": "urgent"}, ["Oslo-8", "Oslo-4", "Oslo-0"]),
        ({"q": "URG"}, ["Oslo-8", "Oslo-4", "Oslo-0"]),
        ({"q": "refund urgent"}, ["Oslo-8", "Oslo-4", "Oslo-0"]),
        ({"q": "oslo 4"}, ["Oslo-4"]),
        ({"q": "urgent", "upstream": "crm", "decision": "deny"}, ["Oslo-0"]),
        ({"q": "nowhere"}, []),
        ({"tool": "nothing"}, []),
    ],
)
def test_each_filter_finds_exactly_its_records_newest_first(
    seeded: Store, where: dict[str, Any], cities: list[str]
) -> None:
    assert _inputs(seeded, **where) == cities


def test_search_terms_are_letter_and_digit_runs_and_operators_are_inert(seeded: Store) -> None:
    assert console.search_terms("ORD-42_x") == ["ORD", "42", "x"]
    assert console.fts_query('a" OR b*') == '"a" "OR" "b"*'
    assert _inputs(seeded, q='urgent" OR "plain') == []
    with pytest.raises(console.FilterError):
        console.search_terms("--- !!")


@pytest.mark.parametrize("where", [{}, {"upstream": "pay"}, {"q": "oslo"}, {"tool": "get_weather"}])
def test_keyset_pages_cover_every_record_once_in_order(seeded: Store, where: dict[str, Any]) -> None:
    everything = [r["id"] for r in _list(seeded, kind="tool_call", **where)]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(20):
        records, cursor = seeded.read_sync(
            lambda c, after=cursor: console.page(
                c, ConsoleFilter(kind="tool_call", **where), limit=5, cursor=after
            )
        )
        seen += [r["id"] for r in records]
        if cursor is None:
            break
    assert seen == everything
    assert len(seen) == len(set(seen))


def test_a_bad_cursor_is_refused() -> None:
    with pytest.raises(console.FilterError):
        console.decode_cursor("2026-01-01~1; DROP TABLE audit_records")


def test_count_matches_the_listing(seeded: Store) -> None:
    for where in ({}, {"q": "urgent"}, {"upstream": "crm"}):
        total = seeded.read_sync(lambda c, w=where: console.count(c, ConsoleFilter(kind="tool_call", **w)))
        assert total == len(_list(seeded, kind="tool_call", **where))


def test_one_record_reports_its_chain_status_and_an_edit_shows(seeded: Store) -> None:
    first = _list(seeded)[-1]
    assert first["seq"] == 1
    status = seeded.read_sync(lambda c: console.by_id(c, first["id"]))
    assert status is not None
    assert status["chain"] == {
        "status": "ok",
        "hash_matches": True,
        "prev_matches": True,
        "detail": "hash and link to the previous record verified",
    }
    middle = _list(seeded)[5]
    seeded.submit(
        lambda c: c.execute(
            text("UPDATE audit_records SET tool_input = :v WHERE id = :id"),
            {"v": '{"city":"Nowhere"}', "id": middle["id"]},
        )
    ).result()
    altered = seeded.read_sync(lambda c: console.by_id(c, middle["id"]))
    assert altered is not None
    assert altered["chain"]["status"] == "altered"
    assert altered["tool_input"] == {"city": "Nowhere"}
    # The word index follows the edit (the FTS5 update trigger on SQLite).
    assert [r["id"] for r in _list(seeded, q="nowhere")] == [middle["id"]]
    assert seeded.read_sync(lambda c: console.by_id(c, "missing")) is None


def test_analytics_totals_series_approvals_and_overhead(seeded: Store) -> None:
    stats = seeded.read_sync(lambda c: console.analytics(c, T0, T0 + timedelta(hours=3)))
    assert stats["total"] == 12
    assert stats["by_decision"] == {"allow": 9, "deny": 3}
    assert stats["by_block_reason"] == {"policy_denied": 3}
    assert stats["top_tools"][0] == {"tool": "get_weather", "count": 8, "blocked": 2}
    assert [h["total"] for h in stats["series"]] == [6, 6, 0]
    assert [h["blocked"] for h in stats["series"]] == [2, 1, 0]
    assert stats["approvals"]["approved"] == 1
    assert stats["approvals"]["approval_rate"] == 1.0
    assert stats["approvals"]["wait_ms_p50"] == 1000.0
    assert stats["overhead_ms"] == {"samples": 12, "p50": 6.0, "p95": 11.0, "p99": 11.0}


def test_search_follows_deletes_and_edits_of_the_arguments(seeded: Store) -> None:
    # Retention deletes and edits reach the word index (SQLite: triggers on a contentless table).
    urgent = _list(seeded, kind="tool_call", q="urgent")
    assert len(urgent) == 3
    gone, edited = urgent[0]["seq"], urgent[1]["seq"]

    def change(conn: Any) -> None:
        conn.execute(text("DELETE FROM audit_records WHERE seq = :s"), {"s": gone})
        conn.execute(
            text("UPDATE audit_records SET tool_input = :t WHERE seq = :s"),
            {"t": '{"city": "Lima-x", "note": "calm"}', "s": edited},
        )

    seeded.submit(change).result(timeout=10)
    assert [r["seq"] for r in _list(seeded, kind="tool_call", q="urgent")] == [urgent[2]["seq"]]
    assert [r["seq"] for r in _list(seeded, kind="tool_call", q="calm")] == [edited]
    assert _list(seeded, kind="tool_call", q="lima") == _list(seeded, kind="tool_call", q="calm")


def test_records_written_before_the_newest_first_index_are_found_after_it(tmp_path: Any) -> None:
    from sqlalchemy import create_engine, insert

    from helio_proxy.store.migrations import MIGRATIONS, apply_migrations
    from helio_proxy.store.tables import AUDIT_RECORDS

    before = [m for m in MIGRATIONS if m.name < "0009"]
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with engine.begin() as conn:
            apply_migrations(conn, lock=lambda _c: None, migrations=before)
            stamp = "2026-05-01T00:00:00.000000Z"
            conn.execute(
                insert(AUDIT_RECORDS),
                [
                    {
                        "seq": n,
                        "id": f"r{n}",
                        "timestamp": stamp,
                        "created_at": stamp,
                        "record_kind": "tool_call",
                        "origin": "mcp",
                        "tool_input": f'{{"order_id": "ORD-{n:04d}"}}',
                        "hash": "h",
                        "prev_hash": "p",
                    }
                    for n in range(1, 6)
                ],
            )
        with engine.begin() as conn:
            assert apply_migrations(conn, lock=lambda _c: None)[:1] == ["0009_audit_search_newest_first"]
            records, _ = console.page(conn, ConsoleFilter(q="ORD-0003"), limit=10)
            assert [r["seq"] for r in records] == [3]
            records, _ = console.page(conn, ConsoleFilter(q="ord"), limit=10)
            assert [r["seq"] for r in records] == [5, 4, 3, 2, 1]
    finally:
        engine.dispose()
