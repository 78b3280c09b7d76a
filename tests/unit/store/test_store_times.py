"""How times are stored: ``time_text`` writes TIME_FORMAT's text, and ``parse_time_text`` reads it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from helio_proxy.store.base import TIME_FORMAT, parse_time_text, time_text

MOMENTS = [
    datetime(2026, 12, 4, 23, 55, 1),  # naive: taken as UTC
    datetime(2026, 12, 4, 23, 55, 1, 7, tzinfo=UTC),
    datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2026, 3, 1, 23, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=-8))),
    datetime(1000, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(999, 5, 5, 1, 2, 3, 4),  # strftime writes the year unpadded
    datetime(1, 1, 1, tzinfo=UTC),
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_a_time_is_stored_as_strftime_writes_the_format(moment: datetime) -> None:
    utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    assert time_text(moment) == utc.strftime(TIME_FORMAT)


@pytest.mark.parametrize("moment", [m for m in MOMENTS if m.year >= 1000], ids=str)
def test_a_stored_time_reads_back_as_the_same_moment_in_utc(moment: datetime) -> None:
    text = time_text(moment)
    assert len(text) == len("2026-12-04T23:55:01.000007Z")  # fixed width: text order is time order
    back = parse_time_text(text)
    assert back.tzinfo is UTC
    assert back == (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))
