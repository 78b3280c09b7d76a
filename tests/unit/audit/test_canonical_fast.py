"""The record hash's fast path (orjson) gives the standard encoder's bytes, byte for byte.

Audit databases written before the fast path are verified with it, so every input must hash as
``json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` over the hashed
columns, UTF-8, always did: where orjson could differ, the standard encoder is used.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import random
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helio_proxy.audit import chain
from helio_proxy.audit.chain import GENESIS_HASH, HASHED_COLUMNS, append_rows, canonical_json, record_hash
from helio_proxy.audit.records import KillSwitchRecord, PolicyReloadRecord, ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.audit.verify import verify_chain
from helio_proxy.store import Store

_STD = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _std_canonical(material: dict[str, Any]) -> bytes:
    return _STD.encode(material).encode("utf-8")


def _std_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(_std_canonical({name: row[name] for name in HASHED_COLUMNS})).hexdigest()


def _row(**values: Any) -> dict[str, Any]:
    """A row of every hashed column (plus hash and signature), ``values`` over defaults."""
    row: dict[str, Any] = dict.fromkeys(HASHED_COLUMNS)
    row.update(seq=1, prev_hash=GENESIS_HASH, id="0d2c", timestamp="2026-03-01T12:00:00.000000Z")
    row.update(values)
    row.update(hash="x", signature=None)
    return row


def _assert_same(row: dict[str, Any]) -> None:
    expected = _std_hash(row)
    assert record_hash(row) == expected
    material = {name: row[name] for name in HASHED_COLUMNS}  # also a new row, before its hash
    assert record_hash(material) == expected
    assert canonical_json(material) == _std_canonical(material)


def _assert_same_failure(row: dict[str, Any], error: type[Exception]) -> None:
    """The standard encoder refuses ``row``; the fast paths refuse it with the same error."""
    with pytest.raises(error):
        _std_hash(row)
    with pytest.raises(error):
        record_hash(row)
    with pytest.raises(error):
        record_hash({name: row[name] for name in HASHED_COLUMNS})


NASTY_TEXT = [
    "",
    "plain",
    'quote " and backslash \\ and slash /',
    "\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x1f\x7f\x80\x9f",
    "line\u2028separator\u2029paragraph\u0085next",
    "non-ASCII: café, naïve, Ωμέγα, 日本語, עברית, \ufeff bom, \ufffd, \uffff",
    "emoji: 🙂👍🏽👨‍👩‍👧 \U0010ffff \U0001f600",
    '{"tool_input":"json in a string","n":[1,2]}',
    "</script><!-- & ' ` ${x}",
]


@pytest.mark.parametrize("text", NASTY_TEXT)
def test_strings_hash_as_the_standard_encoder_writes_them(text: str) -> None:
    _assert_same(_row(tool_name=text, tool_input=json.dumps({"k": text}, ensure_ascii=False), metadata=text))


def test_every_code_point_is_escaped_as_the_standard_encoder_escapes_it() -> None:
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(points), 4096):
        chunk = points[start : start + 4096]
        # each code point alone (its own escape) and all of them in one string (in context)
        material = {f"c{c:06x}": chr(c) for c in chunk}
        material["all"] = "".join(map(chr, chunk))
        assert canonical_json(material) == _std_canonical(material)


def test_a_lone_surrogate_fails_as_it_always_did() -> None:
    _assert_same_failure(_row(tool_name="a\ud800b"), UnicodeEncodeError)


FLOATS = [
    0.0,
    -0.0,
    0.001,
    0.0001,
    1e-05,
    9.999999999999999e-05,
    0.1,
    0.5,
    1.0,
    2.5,
    123456.789,
    1234567.891,
    1e15,
    9999999999999998.0,
    1e16,
    1.0000000000000002e16,
    1e22,
    1.7976931348623157e308,
    5e-324,
    2.2250738585072014e-308,
    math.pi,
    -math.e,
    math.nan,
    math.inf,
    -math.inf,
]


@pytest.mark.parametrize("value", FLOATS + [-x for x in FLOATS])
def test_floats_hash_as_python_writes_them(value: float) -> None:
    _assert_same(_row(upstream_latency_ms=value, total_duration_ms=value, metadata=None))


def test_millisecond_values_hash_as_python_writes_them() -> None:
    """Every ``round(x, 3)`` up to 200 s, as the millisecond columns hold."""
    values = [round(i / 1000, 3) for i in range(200_000)]
    for start in range(0, len(values), 2_000):
        material = {f"v{i:05d}": v for i, v in enumerate(values[start : start + 2_000])}
        assert canonical_json(material) == _std_canonical(material)


def test_random_floats_across_the_fast_range_hash_as_python_writes_them() -> None:
    """Random bit patterns between 1e-4 and 1e16 (benchmarks of 20 million found no difference)."""
    rnd = random.Random(20261203)
    low = struct.unpack("<q", struct.pack("<d", 1e-4))[0]
    high = struct.unpack("<q", struct.pack("<d", 1e16))[0]
    for _ in range(20):
        bits = [rnd.randrange(low, high) for _ in range(5_000)]
        floats = struct.unpack(f"<{len(bits)}d", struct.pack(f"<{len(bits)}q", *bits))
        material = {f"v{i:05d}": (v if i % 2 else -v) for i, v in enumerate(floats)}
        assert canonical_json(material) == _std_canonical(material)
    for edge in (1e-4, 1e16):
        near = [edge]
        for direction in (0.0, math.inf):
            x = edge
            for _ in range(2_000):
                x = math.nextafter(x, direction)
                near.append(x)
        material = {f"v{i:05d}": v for i, v in enumerate(near)}
        assert canonical_json(material) == _std_canonical(material)


@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        -1,
        200,
        2**31,
        2**53 + 1,
        2**63 - 1,
        -(2**63),
        2**63,
        2**64 - 1,
        2**64,
        -(2**63) - 1,
        10**40,
        True,
        False,
    ],
)
def test_integers_hash_as_python_writes_them(value: int) -> None:
    _assert_same(_row(seq=value, upstream_http_status=value, matched_rule_index=value))


class _Color(enum.Enum):
    RED = 1


class _Level(enum.IntEnum):
    HIGH = 3


class _Text(str):
    pass


def test_other_types_encode_or_fail_as_they_always_did() -> None:
    _assert_same(_row(tool_name=_Text("sub"), seq=_Level.HIGH, origin="mcp"))
    _assert_same(_row(metadata={"a": [1, 1e-05, "\u2028"]}, tool_input=[1, 2]))
    for odd in (_Color.RED, NOW, b"bytes", {1, 2}):
        _assert_same_failure(_row(metadata=odd), TypeError)


def test_canonical_json_sorts_any_keys_as_the_standard_encoder() -> None:
    material: dict[str, Any] = {
        "b": 1,
        "a": 2.5,
        "é": "x",
        "Z": None,
        "a\u0301": True,
        "\U0001f600": "e",
        "": 0,
    }
    assert canonical_json(material) == _std_canonical(material)
    assert canonical_json({}) == b"{}"
    assert canonical_json({"n": {"nested": [1, 1e-5]}}) == _std_canonical({"n": {"nested": [1, 1e-5]}})


def test_built_rows_hash_as_before() -> None:
    builder = RowBuilder(Redactor())
    records = [
        ToolCallRecord(
            timestamp=NOW,
            tool_name=name,
            tool_input={"text": name, "n": 7, "f": 1e-05, "big": 2**70},
            upstream_response={
                "jsonrpc": "2.0",
                "id": 1,
                "result": {"content": [{"type": "text", "text": name}]},
            },
            metadata={"request_id": 1},
            upstream_latency_ms=latency,
            total_duration_ms=latency * 3,
            success=True,
        )
        for name in NASTY_TEXT[1:]
        for latency in (0.0, 0.001, 1.234, 98765.4321, 1e-7, 1e17)
    ]
    records += [
        PolicyReloadRecord(timestamp=NOW, outcome="applied", removed_rules=["a", "b"], rule_count=3),
        KillSwitchRecord(timestamp=NOW, engaged=True, actor="ops"),
    ]
    for seq, record in enumerate(records, start=1):
        row = builder.build(record, "2026-03-01T12:00:01.000000Z")
        row.update(seq=seq, prev_hash=GENESIS_HASH)
        _assert_same(row)


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(HASHED_COLUMNS), _scalar))
def test_any_scalar_row_hashes_as_before(values: dict[str, Any]) -> None:
    row = _row(**values)
    try:
        expected = _std_hash(row)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            record_hash(row)
        return
    assert record_hash(row) == expected
    assert record_hash({name: row[name] for name in HASHED_COLUMNS}) == expected


def test_a_row_keyed_by_a_str_subclass_hashes_as_before() -> None:
    class _Name(str):
        pass

    row = {_Name(name): value for name, value in _row(tool_name="t", upstream_latency_ms=1.5).items()}
    del row["hash"], row["signature"]
    assert record_hash(row) == _std_hash(row)


def _nasty_records() -> list[ToolCallRecord]:
    return [
        ToolCallRecord(
            timestamp=NOW,
            tool_name=f"tool {text}",
            tool_input={"text": text, "n": i, "f": 1e-05 * i, "big": 2**70 + i},
            upstream_response={
                "jsonrpc": "2.0",
                "id": i,
                "result": {"content": [{"type": "text", "text": text}]},
            },
            upstream_latency_ms=i * 0.001,
            total_duration_ms=1e17 if i % 2 else 12.5,
            success=True,
        )
        for i, text in enumerate(NASTY_TEXT)
    ]


def test_a_chain_hashed_as_before_verifies_and_a_new_one_verifies_alike(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written before the fast path (standard encoder) verifies; so do new records after it."""
    builder = RowBuilder(Redactor())
    with monkeypatch.context() as patched:
        patched.setattr(chain, "record_hash", _std_hash)
        old_rows = [builder.build(r, "2026-03-01T12:00:01.000000Z") for r in _nasty_records()]
        store.submit(lambda c: append_rows(c, old_rows)).result(timeout=10)
    new_rows = [builder.build(r, "2026-03-01T12:00:02.000000Z") for r in _nasty_records()]
    store.submit(lambda c: append_rows(c, new_rows)).result(timeout=10)
    assert [row["hash"] for row in new_rows] == [_std_hash(row) for row in new_rows]
    report = verify_chain(store)
    assert report.ok, report.problem
    assert report.verified == 2 * len(NASTY_TEXT)
