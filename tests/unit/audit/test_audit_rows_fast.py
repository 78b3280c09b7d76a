"""A row's JSON columns skip the redaction walk only when it would change nothing: same text.

The reference is what every JSON column was stored as before the fast path:
``clean_text(dump_json(redactor.scrub(value)))``; a whole row is compared with the builder as it
was (kept below).
"""

from __future__ import annotations

import enum
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helio_proxy.audit.records import (
    AnyRecord,
    ApprovalResolutionRecord,
    DriftEventRecord,
    KillSwitchRecord,
    PolicyReloadRecord,
    ToolCallRecord,
    response_summary,
)
from helio_proxy.audit.redact import (
    _CARD,  # pyright: ignore[reportPrivateUsage]
    DEFAULT_PATTERNS,
    MAX_DEPTH,
    REDACTED,
    Redactor,
    _mask_card,  # pyright: ignore[reportPrivateUsage]
    _required_literal,  # pyright: ignore[reportPrivateUsage]
    luhn_valid,
)
from helio_proxy.audit.rows import (
    _JSON_COLUMN_ORDER,  # pyright: ignore[reportPrivateUsage]
    _RECORD_COLUMNS,  # pyright: ignore[reportPrivateUsage]
    _TEXT_COLUMNS,  # pyright: ignore[reportPrivateUsage]
    MILLISECOND_COLUMNS,
    RowBuilder,
    clean_text,
    dump_json,
)
from helio_proxy.store.base import time_text

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CREATED = "2026-03-01T12:00:01.000000Z"


def _reference_scrub_text(redactor: Redactor, text: str) -> str:
    """Redactor.scrub_text before the fast path, verbatim."""
    if len(text) < 4:
        return text
    text = _CARD.sub(_mask_card, text)
    return redactor._pair.sub(lambda m: m.group(1) + REDACTED, text)  # pyright: ignore[reportPrivateUsage]


def _reference_scrub(redactor: Redactor, value: Any, depth: int = 0) -> Any:
    """Redactor.scrub before the fast path, verbatim."""
    if isinstance(value, str):
        return _reference_scrub_text(redactor, value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if depth >= MAX_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            name = str(key)  # pyright: ignore[reportUnknownArgumentType]
            out[name] = (
                REDACTED if redactor.key_matches(name) else _reference_scrub(redactor, item, depth + 1)
            )
        return out
    if isinstance(value, list | tuple):
        return [_reference_scrub(redactor, item, depth + 1) for item in value]  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, int):
        digits = str(abs(value))
        if 14 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits):
            return f"[CARD ...{digits[-4:]}]"
        return value
    return _reference_scrub_text(redactor, str(value))


def _reference_build(builder: RowBuilder, record: AnyRecord, created_at: str) -> dict[str, Any]:
    """RowBuilder.build before the fast path, verbatim."""
    values: dict[str, Any] = dict.fromkeys(_RECORD_COLUMNS)
    extra: dict[str, Any] = {}
    for name, value in record.__dict__.items():
        if name in _RECORD_COLUMNS:
            values[name] = value
        else:
            extra[name] = value
    if extra:
        values["metadata"] = {**extra, **(record.metadata or {})}
    if isinstance(record, ToolCallRecord) and not builder.include_responses:
        values["upstream_response"] = (
            response_summary(record.upstream_response) if record.success is not None else None
        )
    values["id"] = str(record.id)
    values["timestamp"] = time_text(record.timestamp)
    values["created_at"] = created_at

    def scrub(value: Any) -> Any:
        return _reference_scrub(builder.redactor, value)

    for name in _JSON_COLUMN_ORDER:
        value = values[name]
        if value is not None:
            values[name] = clean_text(dump_json(scrub(value)))
    for name in _TEXT_COLUMNS:
        value = values[name]
        if value is not None:
            values[name] = clean_text(str(value))
    for name in MILLISECOND_COLUMNS:
        value = values[name]
        if value is not None:
            values[name] = round(float(value), 3)
    values["flagged_destructive"] = bool(values["flagged_destructive"])
    values["dry_run"] = bool(values["dry_run"])
    if values["success"] is not None:
        values["success"] = bool(values["success"])
    return values


def _reference_text(redactor: Redactor, value: Any) -> str:
    return clean_text(dump_json(_reference_scrub(redactor, value)))


class _Color(enum.Enum):
    RED = "red"
    TOKEN = "x"


class _Sneaky(enum.Enum):
    """orjson writes the value; the walk (and the standard encoder) see str()."""

    PAIR = 1
    CARD = 2

    def __str__(self) -> str:
        return "password=hunter2" if self is _Sneaky.PAIR else "pay 4111 1111 1111 1111"


class _Level(enum.IntEnum):
    CARD = 4111111111111111


class _Word(str, enum.Enum):  # noqa: UP042 - what the walk sees as a str
    SECRET = "password=hunter2"


class _Text(str):
    pass


class _Number(int):
    pass


class _Map(dict[str, Any]):
    pass


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


VALUES: list[Any] = [
    {},
    [],
    {"text": "hello", "n": 7},
    {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "ok"}], "isError": False}},
    {"request_id": 1},
    # what redaction changes
    {"api_key": "sk-live-abc", "card": "4111 1111 1111 1111"},
    {"note": "Authorization: Bearer abc"},
    {"q": "password=hunter2&x=1"},
    {"n": 4111111111111111, "m": -4111111111111111, "k": 1700000000000000},
    {"max_tokens": 100},
    {"nested": [{"deep": {"Set-Cookie": "a=b"}}]},
    {"s": "4111-1111-1111-1111", "t": "at 4111111111111112", "u": "55555555555544444"},
    {
        "pan": "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661"
    },
    # case folding the regular expressions do: long s, Kelvin sign, dotted capital I
    {"pa\u017f\u017fword": "x", "to\u212aen": "y", "authorİzation": "z", "APİ_KEY": "w"},
    {"text": "pa\u017f\u017fword=hunter2 and To\u212aen: abc"},
    # escapes, non-ASCII, NUL, surrogates
    {"k": 'quote " backslash \\ \x00 \x1f \x7f \u2028 \u2029 café 🙂'},
    {'key "quoted"\n': "v", "tab\tkey": "\x00"},
    {"lone": "a\ud800b"},
    {"a\udfffb": 1},
    # floats and big integers
    {"f": [0.0, -0.0, 0.001, 1e-05, 1e16, 123456.789, 1e22, 5e-324]},
    {"f": math.nan, "g": math.inf, "h": -math.inf},
    {"big": 2**64, "neg": -(2**63) - 1, "huge": 10**40, "edge": 2**64 - 1},
    # containers and types the walk converts
    {"t": (1, "two", (3.0,))},
    {1: "a", "1": "b"},
    {True: 1, None: 2, 1.5: 3},
    {(1, 2): "tuple key"},
    {_Text("sub"): "key subclass", "v": _Text("value subclass")},
    {"m": _Map(a=1)},
    {"n": _Number(5)},
    {"when": NOW, "id": uuid.UUID(int=7), "set": {1}},
    {"color": _Color.RED, "token_color": _Color.TOKEN, "level": _Level.CARD, "word": _Word.SECRET},
    {"uuid": uuid.UUID("41111111-1111-1111-1111-111111111111")},
    {"e": _Sneaky.PAIR},
    {"e": [_Sneaky.CARD, 1.5]},
    {"bytes": b"abc"},
    # depth around the walk's limit
    *[
        {"deep": _nested(depth, leaf)}
        for depth in range(MAX_DEPTH - 4, MAX_DEPTH + 4)
        for leaf in ("x", 1, [], {})
    ],
    {"wide": [{"i": i, "s": "[{" * 3} for i in range(200)]},
    {"brackets in strings": "[" * 100 + "{" * 100},
]


PATTERN_SETS: list[tuple[str, ...]] = [
    (),
    ("ssn", "x-internal"),
    (r"^ssn$",),  # anchors: the fast path is off
    ("s.n",),  # any character: off
    ("[ -~]x",),  # a range over quotes and backslashes: off
    (r"x\sy",),  # whitespace: off
    ("contraseña", "Clave"),  # non-ASCII: searched case-insensitively
    ("(?i:foo)",),
    ("red",),
    ("café",),
    ("ab?cd", r"x\d{3,4}", r"[\]a]x", "api[-_ ]?key2", r"[A-Z0-9_]+_pw", "(?:one|two)+", r"\d{3}-\d{2}"),
]


@pytest.mark.parametrize("patterns", PATTERN_SETS, ids=lambda p: "|".join(p) or "defaults")
def test_json_text_is_the_scrubbed_serialization(patterns: tuple[str, ...]) -> None:
    redactor = Redactor(patterns)
    builder = RowBuilder(redactor)
    for value in VALUES:
        assert builder.json_text(value) == _reference_text(redactor, value), value


@pytest.mark.parametrize("patterns", PATTERN_SETS[:3], ids=lambda p: "|".join(p) or "defaults")
@pytest.mark.parametrize("include_responses", [True, False])
def test_rows_are_built_as_before(patterns: tuple[str, ...], include_responses: bool) -> None:
    builder = RowBuilder(Redactor(patterns), include_responses=include_responses)
    records: list[AnyRecord] = []
    for value in VALUES:
        records.append(
            ToolCallRecord(
                timestamp=NOW,
                tool_name="t\x00\ud800",
                tool_input={"arg": value},
                upstream_response={"jsonrpc": "2.0", "id": 1, "result": {"value": value}},
                upstream_error={"failure_class": "x", "detail": value},
                evidence_chain={"e": value},
                metadata={"m": value},
                upstream_latency_ms=1.23456,
                total_duration_ms=2,
                success=True,
            )
        )
    records += [
        ToolCallRecord(timestamp=NOW, tool_name="a", session_id="café", agent_id="a\x00b", success=None),
        ToolCallRecord(timestamp=datetime(2026, 3, 1, 12, 0), tool_name="naive", flagged_destructive=True),
        DriftEventRecord(timestamp=NOW, tool_name="d", drifted_aspects=["description"], metadata={"x": 1}),
        PolicyReloadRecord(timestamp=NOW, outcome="rejected", error="bad password=x", metadata={"x": 1}),
        ApprovalResolutionRecord(timestamp=NOW, ticket_id="t", tool_name="n", approval_status="approved"),
        KillSwitchRecord(timestamp=NOW, engaged=True, actor="ops", source="cli"),
    ]
    for record in records:
        assert builder.build(record, CREATED) == _reference_build(builder, record, CREATED), record


def test_a_typical_call_skips_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    redactor = Redactor()
    builder = RowBuilder(redactor)
    record = ToolCallRecord(
        timestamp=NOW,
        tool_name="echo",
        tool_input={"text": "hello", "n": 7},
        upstream_response={
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"content": [{"type": "text", "text": "ok"}]},
        },
        metadata={"request_id": 1},
        success=True,
    )
    expected = _reference_build(builder, record, CREATED)

    def walk(value: Any) -> Any:
        raise AssertionError(f"walked {value!r}")

    monkeypatch.setattr(redactor, "scrub", walk)
    assert builder.build(record, CREATED) == expected


@pytest.mark.parametrize(
    ("patterns", "fast"),
    [
        ((), True),
        (
            ("ssn", r"api[-_ ]?key2", r"x\d{3,4}", r"[A-Z0-9_]+_pw", r"a\.b", "(?:one|two)+", "contraseña"),
            True,
        ),
        ((r"^ssn$",), False),
        ((r"\bssn",), False),
        (("s.n",), False),
        (("[^a]",), False),
        (("[ -~]",), False),
        (("[Z-a]",), False),
        ((r"x\sy",), False),
        ((r"x\Wy",), False),
        ((r"(?=x)y",), False),
        (("(?P<a>x)(?P=a)",), False),
        (('"',), False),
        ((r"\\",), False),
        (("(?i:x)",), False),
        (("(?x:a b)",), False),
    ],
)
def test_only_patterns_found_verbatim_in_json_text_allow_the_fast_path(
    patterns: tuple[str, ...], fast: bool
) -> None:
    assert Redactor(patterns).may_redact('{"a":1}') is not fast


_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**66), max_value=2**66),
    st.integers(min_value=10**13, max_value=10**19),
    st.floats(),
    st.text(),
    st.text(alphabet="0123456789 -"),
    st.sampled_from(["password", "token=abc", "Authorization: Bearer x", "4111 1111 1111 1111", "ok", "ssn"]),
)
_json_value = st.recursive(
    _json_scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.one_of(st.text(max_size=12), st.sampled_from(["api_key", "secret", "SSN", "n", "text"])),
            children,
            max_size=5,
        ),
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(_json_value)
def test_any_json_value_is_stored_as_before(value: Any) -> None:
    for redactor in (Redactor(), Redactor(("ssn",)), Redactor(("^ssn",))):
        assert RowBuilder(redactor).json_text(value) == _reference_text(redactor, value)


def test_nesting_is_measured_outside_strings() -> None:
    from helio_proxy.audit.rows import _nesting_within  # pyright: ignore[reportPrivateUsage]

    limit = MAX_DEPTH - 1
    assert _nesting_within(dump_json(_nested(limit, 1)), limit)
    assert not _nesting_within(dump_json(_nested(limit + 1, 1)), limit)
    assert not _nesting_within(dump_json(_nested(limit + 1, [])), limit)
    assert _nesting_within(dump_json([{"i": i, "s": '"[{\\'} for i in range(500)]), limit)
    assert _nesting_within(dump_json({"s": "[" * 500}), limit)


STRINGS = [
    "",
    "abc",
    "abcd",
    "hello world",
    "password=hunter2",
    "PASSWORD: x",
    "Authorization: Bearer abc",
    "set-cookie: a=b; path=/",
    "api key = 123",
    "the token is here",
    "order 4111 1111 1111 1111 today",
    "4111-1111-1111-1111",
    "at 1700000000000000",
    "4111111111111112",
    "pa\u017f\u017fword=x",
    "To\u212aen: abc",
    "authorİzation: x",
    "caf\u00e9 password=x",
    "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661",
    "ssn: 123-45-6789",
]


@pytest.mark.parametrize("patterns", PATTERN_SETS, ids=lambda p: "|".join(p) or "defaults")
def test_scrub_text_is_as_before(patterns: tuple[str, ...]) -> None:
    redactor = Redactor(patterns)
    for text in STRINGS:
        assert redactor.scrub_text(text) == _reference_scrub_text(redactor, text), text
        assert redactor.scrub_text(_Text(text)) == _reference_scrub_text(redactor, _Text(text)), text
    for value in VALUES:
        assert redactor.scrub(value) == _reference_scrub(redactor, value), value


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="0123456789 -=:apsword"),
        st.text(alphabet=st.characters(max_codepoint=127)),
    )
)
def test_any_text_is_scrubbed_as_before(text: str) -> None:
    for redactor in (Redactor(), Redactor(("ssn",)), Redactor(("^ssn",))):
        assert redactor.scrub_text(text) == _reference_scrub_text(redactor, text)


LITERAL_PATTERNS = [
    *DEFAULT_PATTERNS,
    "ab?cd",
    "abc*",
    r"x\d{3,4}yz",
    r"[\]a]xq",
    r"[-a]bc",
    r"[a-]bc\-d",
    r"a\d\wbc",
    r"[A-Z0-9_]+_pw",
    r"a\.b",
    "x{2}yz",
    "AbC",
]


@pytest.mark.parametrize("pattern", LITERAL_PATTERNS)
def test_the_literal_a_pattern_requires_is_in_every_match(pattern: str) -> None:
    literal = _required_literal(pattern)
    assert literal
    compiled = re.compile(pattern, re.IGNORECASE)

    @settings(max_examples=200, deadline=None)
    @given(st.from_regex(compiled, alphabet=st.characters(max_codepoint=127)))
    def check(text: str) -> None:
        match = compiled.search(text)
        assert match is not None
        assert literal in match.group(0).lower()

    check()


def test_what_only_the_standard_text_shows_is_still_scrubbed() -> None:
    builder = RowBuilder(Redactor())
    assert builder.json_text({"e": _Sneaky.PAIR}) == '{"e":"password=[REDACTED]"}'
    assert builder.json_text({"e": _Sneaky.CARD}) == '{"e":"pay [CARD ...1111]"}'
