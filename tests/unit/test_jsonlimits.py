"""The JSON caps read the bytes: what each counts, and what they leave to the parser."""

from __future__ import annotations

import contextlib
import json
import time

import pytest

from helio_proxy.jsonlimits import InputLimitExceeded, JsonLimits, check
from helio_proxy.jsonrpc import parse

CAPS = JsonLimits(max_depth=3, max_string_length=5, max_array_length=3)


def _limit(raw: bytes) -> str | None:
    try:
        check(raw, CAPS)
    except InputLimitExceeded as exc:
        return exc.limit
    return None


@pytest.mark.parametrize(
    ("raw", "limit"),
    [
        (b'{"a":[[1]]}', None),
        (b'{"a":[[[1]]]}', "max_json_depth"),
        (b'["[[[[[[", "{{{{"]', "max_string_length"),  # brackets inside strings do not nest
        (b'["[[[", "{{{{", "]]"]', None),
        (b'["abcde"]', None),
        (b'["abcdef"]', "max_string_length"),
        (b'{"abcdef":1}', "max_string_length"),  # keys are strings too
        (b'["\\"\\"\\""]', "max_string_length"),  # escapes count as sent
        (b"[1,2,3]", None),
        (b"[1,2,3,4]", "max_array_length"),
        (b'{"a":1,"b":2,"c":3,"d":4}', "max_array_length"),
        (b"[[1,2],[3],[4,5,6]]", None),
        (b'["a,b,c,d,e"]', "max_string_length"),
        (b'"unterminated [[[[[[', "max_string_length"),  # an open string runs to the end
        (b'"ab', None),  # not JSON, but within the caps: the parser says what is wrong
        (b"]]]]][[[[[", None),
    ],
)
def test_each_cap_counts_what_the_docs_say(raw: bytes, limit: str | None) -> None:
    assert _limit(raw) == limit


def test_a_refusal_names_the_cap_and_its_value() -> None:
    with pytest.raises(InputLimitExceeded) as caught:
        check(b"[" * 10 + b"]" * 10, CAPS)
    assert caught.value.details == {"limit": "max_json_depth", "max": 3}


def test_a_utf16_body_is_checked_as_its_utf8_equivalent() -> None:
    """U+225B is the bytes 5B 22 in UTF-16LE: '[' then '"' to a reader of raw bytes."""
    text = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"s": "\u225b"}}, ensure_ascii=False
    )
    caps = JsonLimits(max_depth=3, max_string_length=64, max_array_length=8)
    assert parse(text.encode("utf-16"), caps).method == "ping"
    deep = '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":[[[1]]]}}'
    with pytest.raises(Exception, match="nested more than 3"):
        parse(deep.encode("utf-16"), caps)


@pytest.mark.parametrize("unit", [b'"\\', b'"a\\', b'"', b'["a\\'])
def test_the_scan_stays_linear_on_unterminated_strings(unit: bytes) -> None:
    """A string pattern that could fail at the end would be retried from every later quote:
    ``"\\"\\"\\...`` took quadratic time (minutes for 2.6 MB) before the pattern could not fail."""
    body = unit * 200_000
    started = time.perf_counter()
    with contextlib.suppress(InputLimitExceeded):
        check(body, CAPS)
    assert time.perf_counter() - started < 2.0
