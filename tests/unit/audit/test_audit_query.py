from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helio_proxy.audit.chain import append_rows
from helio_proxy.audit.query import AuditFilter, fetch, search
from helio_proxy.audit.records import KillSwitchRecord, ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.store import Store

T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def seeded(store: Store) -> Store:
    builder = RowBuilder(Redactor())
    records = [
        ToolCallRecord(
            timestamp=T0, tool_name="get_weather", session_id="s1", upstream_http_status=200, success=True
        ),
        ToolCallRecord(
            timestamp=T0 + timedelta(hours=1),
            tool_name="Delete_User",
            session_id="s2",
            policy_decision="deny",
            block_reason="policy_denied",
            flagged_destructive=True,
            agent_id="a1",
        ),
        ToolCallRecord(
            timestamp=T0 + timedelta(hours=2),
            tool_name="get_weather",
            session_id="s1",
            upstream_http_status=502,
            success=False,
            dry_run=True,
        ),
        ToolCallRecord(timestamp=T0 + timedelta(hours=3), tool_name="x_50%_off", origin="openclaw"),
        KillSwitchRecord(timestamp=T0 + timedelta(hours=4), engaged=True),
    ]
    rows = [builder.build(r, "c") for r in records]
    store.submit(lambda c: append_rows(c, rows)).result(timeout=10)
    return store


def _tools(store: Store, **where: Any) -> list[str | None]:
    return [r["tool_name"] for r in store.read_sync(lambda c: fetch(c, AuditFilter(**where), order="oldest"))]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({}, ["get_weather", "Delete_User", "get_weather", "x_50%_off", None]),
        ({"tool": "WEATHER"}, ["get_weather", "get_weather"]),
        ({"tool": "50%"}, ["x_50%_off"]),
        ({"tool": "_"}, ["get_weather", "Delete_User", "get_weather", "x_50%_off"]),
        ({"decision": "deny"}, ["Delete_User"]),
        ({"reason": "policy_denied"}, ["Delete_User"]),
        ({"blocked": True}, ["Delete_User"]),
        ({"session": "s1"}, ["get_weather", "get_weather"]),
        ({"agent": "a1"}, ["Delete_User"]),
        (
            {"since": T0 + timedelta(hours=1), "until": T0 + timedelta(hours=3)},
            ["Delete_User", "get_weather"],
        ),
        ({"upstream_status_min": 500}, ["get_weather"]),
        ({"upstream_status_max": 299}, ["get_weather"]),
        ({"record_kind": "kill_switch"}, [None]),
        ({"destructive": True}, ["Delete_User"]),
        ({"dry_run": True}, ["get_weather"]),
        ({"origin": "CLAW"}, ["x_50%_off"]),
    ],
)
def test_filters_select_the_matching_records(
    seeded: Store, where: dict[str, Any], expected: list[str | None]
) -> None:
    assert _tools(seeded, **where) == expected


async def test_pages_are_newest_first_with_the_total(seeded: Store) -> None:
    page = await search(seeded, AuditFilter(), limit=2, offset=1)
    assert page.total == 5
    assert [r["seq"] for r in page.records] == [4, 3]
    assert page.records[0]["origin"] == "openclaw"


def test_an_oldest_first_export_holds_the_most_recent_records(seeded: Store) -> None:
    rows = seeded.read_sync(lambda c: fetch(c, AuditFilter(), limit=2, order="oldest"))
    assert [r["seq"] for r in rows] == [4, 5]
