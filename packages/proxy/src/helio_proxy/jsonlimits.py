"""Caps on the shape of JSON a client sends: nesting depth, string length, array length.

Every JSON entry point (the MCP ingress on each transport, the sideband, the operator API, Slack's
callbacks) checks the raw bytes with :func:`check` *before* parsing, so a hostile body cannot make
the parser, the policy matchers, the redactor or the audit serialiser recurse a thousand levels
deep, nor hold one huge string or array the proxy would then copy around.

The check reads the bytes, not a parsed value, and is cheap on ordinary traffic: three
``bytes.count`` calls prove that a body has too few brackets to be deeper than the cap, too few
bytes to hold a longer string, and too few commas to hold a longer array (about 0.3 us on a
200-byte ``tools/call``). Only a body that fails one of those proofs is scanned: strings are
skipped by one regular expression (linear, possessive), then the structure is walked once, with
an early exit at the first breach.

Definitions (what the documented caps count):

* depth: how many arrays and objects enclose the deepest value (``{"a": [1]}`` is 2);
* string length: the bytes of one JSON string as sent, escapes included, quotes excluded
  (object keys are strings too);
* array length: the elements of one array or the members of one object.

Bodies that are not JSON are mostly left to the parser: a scan that meets a stray closing bracket
or comma stops and reports nothing, and the parser then answers "parse error". A body that opens
more brackets than the depth cap is refused as too deep even if it would never have parsed: the
check does not read to the end to find out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

DEFAULT_MAX_JSON_DEPTH: Final = 64
"""Deepest nesting of arrays and objects accepted in one message."""

DEFAULT_MAX_STRING_LENGTH: Final = 1 << 20
"""Longest JSON string accepted (1 MiB as sent, escapes included)."""

DEFAULT_MAX_ARRAY_LENGTH: Final = 10_000
"""Most elements in one array (or members in one object) accepted."""

INPUT_LIMIT_EXCEEDED: Final = "input_limit_exceeded"
"""The stable reason (JSON-RPC ``data.reason``) and code (REST ``code``) of every cap breach."""

_STRING: Final = re.compile(rb'("[^"\\]*+(?:\\.[^"\\]*+)*+\\?+(?:"|\Z))', re.DOTALL)
"""One JSON string. Once it has matched an opening quote it cannot fail: an unterminated string
(even one ending in a lone backslash) runs to the end. A pattern that could fail there would be
retried from every later quote, and ``"\\"\\"\\...`` would take quadratic time (found by
timing adversarial bodies; see benchmarks/bench_jsonlimits.py)."""

_STRUCTURE: Final = bytes(range(256)).translate(None, b"[]{},")
"""Every byte that is not structure: deleted by ``bytes.translate`` to leave ``[]{},``."""

_OPEN: Final = frozenset(b"[{")
_CLOSE: Final = frozenset(b"]}")
_COMMA: Final = ord(",")


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """The caps one entry point applies (see the module docstring for what each counts)."""

    max_depth: int = DEFAULT_MAX_JSON_DEPTH
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH
    max_array_length: int = DEFAULT_MAX_ARRAY_LENGTH


DEFAULT_LIMITS: Final = JsonLimits()


class InputLimitExceeded(ValueError):
    """A body breaks a cap: ``limit`` names it (the config key), ``maximum`` is its value."""

    def __init__(self, limit: str, maximum: int, what: str) -> None:
        super().__init__(f"{what} (the limit is {maximum}; {limit})")
        self.limit = limit
        self.maximum = maximum

    @property
    def details(self) -> dict[str, Any]:
        """What an error answer carries beside the reason: ``{"limit", "max"}``."""
        return {"limit": self.limit, "max": self.maximum}


def check(raw: bytes, limits: JsonLimits = DEFAULT_LIMITS) -> None:
    """Raise :class:`InputLimitExceeded` if ``raw`` (JSON bytes) breaks one of ``limits``."""
    deep = raw.count(b"[") + raw.count(b"{") > limits.max_depth
    long_strings = len(raw) > limits.max_string_length + 2
    long_arrays = raw.count(b",") >= limits.max_array_length
    if not (deep or long_strings or long_arrays):
        return
    # One regex pass splits the body into [between, string, between, string, ..., between].
    parts = _STRING.split(raw)
    if long_strings:
        longest = max(map(len, parts[1::2]), default=2) - 2
        if longest > limits.max_string_length:
            raise InputLimitExceeded(
                "max_string_length", limits.max_string_length, f"a JSON string is {longest} bytes long"
            )
    if deep or long_arrays:
        _walk(b"".join(parts[0::2]).translate(None, _STRUCTURE), limits)


def _walk(structure: bytes, limits: JsonLimits) -> None:
    """One pass over the brackets and commas of a body (strings removed)."""
    counts: list[int] = []  # commas seen so far in each open array or object
    max_depth = limits.max_depth
    max_commas = limits.max_array_length - 1
    for byte in structure:
        if byte == _COMMA:
            if not counts:
                return  # a comma outside any container: not JSON, the parser says so
            counts[-1] += 1
            if counts[-1] > max_commas:
                raise InputLimitExceeded(
                    "max_array_length",
                    limits.max_array_length,
                    f"an array or object has more than {limits.max_array_length} elements",
                )
        elif byte in _OPEN:
            counts.append(0)
            if len(counts) > max_depth:
                raise InputLimitExceeded(
                    "max_json_depth", max_depth, f"JSON is nested more than {max_depth} levels deep"
                )
        elif byte in _CLOSE:
            if not counts:
                return
            counts.pop()


def body_limit_data(maximum: int, limit: str = "max_body_bytes") -> dict[str, Any]:
    """The JSON-RPC ``data`` (or REST ``details``) of a body refused for its size."""
    return {"reason": INPUT_LIMIT_EXCEEDED, "limit": limit, "max": maximum}
