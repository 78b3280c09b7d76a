"""Hypothesis strategies for hostile input: JSON-RPC messages, batches, raw and mutated bytes,
cap breaches, and HTTP headers.

Each body strategy draws a :class:`Body`: the bytes, and when they were built to break one cap
(depth, string or array length) of :data:`CAPS`, the cap's name, so a test can assert the exact
refusal rather than only "no 5xx".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from hypothesis import strategies as st

from helio_proxy.jsonlimits import JsonLimits

CAPS: Final = JsonLimits(max_depth=16, max_string_length=2048, max_array_length=64)
"""The caps the fuzzed MCP listener is configured with (small, so breaches are cheap to build)."""

METHODS: Final = (
    "tools/call",
    "tools/list",
    "initialize",
    "ping",
    "resources/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
"""Any JSON value, small and shallow (well within the caps)."""

_ids = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63),
    st.text(max_size=12),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.just([1]),
)
_tool_params = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["get_weather", "create_payment", "delete_user", "nope"])
        | st.text(max_size=10)
    },
    optional={
        "arguments": st.dictionaries(st.text(max_size=8), json_values, max_size=4) | json_values,
        "_meta": st.dictionaries(
            st.sampled_from(["progressToken", "io.gethelio/session-id", "x"]), json_values
        ),
    },
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON-RPC object: mostly well formed, with any key wrong, missing or extra."""
    method = draw(st.sampled_from(METHODS) | st.text(max_size=16))
    message: dict[str, Any] = {"jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2]))}
    if draw(st.integers(0, 9)) > 0:
        message["id"] = draw(_ids)
    if draw(st.integers(0, 9)) > 0:
        message["method"] = method
    if draw(st.booleans()):
        message["params"] = draw(_tool_params if method == "tools/call" else json_values)
    if draw(st.integers(0, 9)) == 0:
        message[draw(st.sampled_from(["result", "error", "extra"]))] = draw(json_values)
    return message


@dataclass(frozen=True)
class Body:
    """Bytes to send, and the cap they break (``None``: maybe none, or not on purpose)."""

    raw: bytes
    breaks: str | None = None


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


@st.composite
def _mutated(draw: st.DrawFn) -> Body:
    """A well-formed message with a few bytes flipped, dropped, repeated or inserted."""
    data = bytearray(_dump(draw(messages())))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.integers(0, 3))
        if action == 0:
            data[at] = draw(st.integers(0, 255))
        elif action == 1:
            del data[at]
        elif action == 2:
            data[at:at] = data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.sampled_from([b"{", b"[", b'"', b"\\", b"\x00", b"\xff", b",", b"}"]))
    return Body(bytes(data))


def _wrap(inner: bytes) -> bytes:
    return (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":'
        + inner
        + b"}}"
    )


@st.composite
def _breach(draw: st.DrawFn) -> Body:
    """A message built to break exactly one cap of :data:`CAPS`."""
    which = draw(st.sampled_from(["max_json_depth", "max_string_length", "max_array_length"]))
    if which == "max_json_depth":
        depth = draw(st.integers(CAPS.max_depth, CAPS.max_depth * 200))
        open_, close = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return Body(_wrap(open_ * depth + b"1" + close * depth), which)
    if which == "max_string_length":
        size = draw(st.integers(CAPS.max_string_length + 1, CAPS.max_string_length * 4))
        fill = draw(st.sampled_from([b"a", b"\\n", b"\\u00e9", "é".encode()]))
        return Body(_wrap(b'{"city":"' + fill * size + b'"}'), which)
    count = draw(st.integers(CAPS.max_array_length + 1, CAPS.max_array_length * 20))
    element = draw(st.sampled_from([b"0", b'"x"', b"[]", b"{}", b"null"]))
    return Body(_wrap(b"[" + b",".join([element] * count) + b"]"), which)


_hostile_literals = st.sampled_from(
    [
        b"",
        b" ",
        b"null",
        b"[]",
        b"{}",
        b'"x"',
        b"[" * 5000,
        b"]" * 50,
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":' + b"1" * 5000 + b"}}",
        b'{"jsonrpc":"2.0","id":1e999,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":NaN}}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"\\ud800"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","id":2}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y"}}',
        b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get_weather"}}',
        b"\xef\xbb\xbf" + b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        '{"jsonrpc":"2.0","id":1,"method":"ping"}'.encode("utf-16"),
        '{"jsonrpc":"2.0","id":1,"method":"ping"}'.encode("utf-32"),
        b'{"jsonrpc":"2.0","id":1,"method":"ping"}' * 3,
        b'"' + b'\\"' * 4000,
    ]
)

bodies = st.one_of(
    messages().map(lambda m: Body(_dump(m))),
    st.lists(messages(), min_size=0, max_size=6).map(lambda ms: Body(_dump(ms))),
    st.binary(max_size=96).map(Body),
    _mutated(),
    _breach(),
    _hostile_literals.map(Body),
)
"""Any body an agent (or an attacker on the MCP port) could send."""

header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
)
"""Latin-1 printable text (what an HTTP header value can carry)."""


@st.composite
def mcp_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Headers an agent might send to the MCP port, each present, absent or hostile."""
    headers: list[tuple[str, str]] = []
    host = draw(st.sampled_from(["127.0.0.1:3000"] * 6 + ["localhost", "evil.example", ""]))
    if host:
        headers.append(("host", host))
    content_type = draw(
        st.sampled_from(
            [
                "application/json",
                "application/json",
                "application/json; charset=utf-8",
                "text/plain",
                "",
                "APPLICATION/JSON",
            ]
        )
        | header_text
    )
    if content_type:
        headers.append(("content-type", content_type))
    if draw(st.booleans()):
        headers.append(
            (
                "accept",
                draw(
                    st.sampled_from(["application/json, text/event-stream", "application/json", "*/*"])
                    | header_text
                ),
            )
        )
    optional = {
        "mcp-session-id": st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=64),
        "mcp-protocol-version": st.sampled_from(["2025-06-18", "2025-03-26", "2024-11-05", "1999-01-01"])
        | header_text,
        "x-helio-session-id": header_text,
        "origin": st.sampled_from(["http://localhost:3000", "https://evil.example", "null"]) | header_text,
        "authorization": header_text,
        "last-event-id": header_text,
        "content-length": st.sampled_from(["0", "1", "99999999999", "-1", "abc"]),
    }
    for name, values in optional.items():
        if draw(st.integers(0, 5)) == 0:
            headers.append((name, draw(values)))
    return headers


rest_bodies = st.one_of(
    st.dictionaries(st.text(max_size=16), json_values, max_size=6).map(lambda d: Body(_dump(d))),
    json_values.map(lambda v: Body(_dump(v))),
    st.binary(max_size=96).map(Body),
    _hostile_literals.map(Body),
    st.integers(65, 3000).map(lambda n: Body(b"[" * n + b"]" * n, "max_json_depth")),
    st.integers(10_001, 30_000).map(lambda n: Body(b"[" + b",".join([b"0"] * n) + b"]", "max_array_length")),
)
"""Bodies for the REST surfaces (operator API, sideband), which apply the default caps."""
