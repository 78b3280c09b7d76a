"""JSON-RPC classification of incoming messages."""

from __future__ import annotations

import json
import random
import struct
from typing import Any

import pytest

from helio_proxy.jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    EnvelopeError,
    Kind,
    Message,
    dumps,
    error_payload,
    is_response_for,
    parse,
    parse_any,
    read_json,
)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', Kind.REQUEST),
        (b'{"jsonrpc":"2.0","id":"a","method":"x","params":{}}', Kind.REQUEST),
        (b'{"jsonrpc":"2.0","method":"notifications/initialized"}', Kind.NOTIFICATION),
        (b'{"jsonrpc":"2.0","id":3,"result":{}}', Kind.RESPONSE),
        (b'{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"x"}}', Kind.RESPONSE),
    ],
)
def test_messages_are_classified(raw: bytes, kind: Kind) -> None:
    message = parse(raw)
    assert message.kind is kind
    assert message.raw == raw


def test_malformed_json_is_a_parse_error() -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse(b"{nope")
    assert caught.value.code == PARSE_ERROR


def test_invalid_envelope_keeps_a_readable_id() -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse(b'{"jsonrpc":"2.0","id":4,"method":""}')
    assert caught.value.code == INVALID_REQUEST
    assert caught.value.request_id == 4


def test_error_payload_leaves_out_an_unknown_id() -> None:
    assert "id" not in error_payload(None, -32600, "bad")
    assert error_payload(1, -32600, "bad", {"k": 1})["error"]["data"] == {"k": 1}


def test_response_matching_is_type_exact() -> None:
    assert is_response_for({"jsonrpc": "2.0", "id": 1, "result": {}}, 1)
    assert not is_response_for({"jsonrpc": "2.0", "id": "1", "result": {}}, 1)
    assert not is_response_for({"jsonrpc": "2.0", "id": 1, "method": "x"}, 1)


def test_parse_any_keeps_a_single_message_and_splits_a_batch_answering_bad_elements_in_place() -> None:
    single = parse_any(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert isinstance(single, Message)
    assert single.method == "ping"
    batch = parse_any(b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"x"},7]')
    assert isinstance(batch, list)
    first, second, third = batch
    assert isinstance(first, Message)
    assert first.kind is Kind.REQUEST
    assert first.raw == b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    assert isinstance(second, Message)
    assert second.kind is Kind.NOTIFICATION
    assert isinstance(third, EnvelopeError)
    assert third.code == -32600


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", "an empty batch is not a JSON-RPC request"),
        (b"[" + b",".join([b'{"jsonrpc":"2.0","method":"x"}'] * 101) + b"]", "at most 100 messages"),
    ],
)
def test_parse_any_refuses_empty_and_oversized_batches(raw: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        parse_any(raw)


@pytest.mark.parametrize(
    ("raw", "where", "request_id"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"a":2}}', "params.a", 1),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"l":[{},{"b":1,"b":1}]}}', "params.l[1].b", 1),
        (b'{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}', "id", None),
        (b'{"jsonrpc":"2.0","id":"q","result":{"x":{"y":{"z":1,"z":1}}}}', "result.x.y.z", "q"),
    ],
)
def test_a_repeated_key_at_any_depth_is_refused_naming_where(
    raw: bytes, where: str, request_id: str | int | None
) -> None:
    """Issue 22 point 9: two parsers read a repeated key differently (first value or last)."""
    with pytest.raises(EnvelopeError) as caught:
        parse(raw)
    assert (caught.value.code, caught.value.reason) == (INVALID_REQUEST, "duplicate_key")
    assert caught.value.detail is not None
    assert caught.value.detail["duplicate_key"] == where
    assert caught.value.request_id == request_id


def test_in_a_batch_only_the_element_repeating_a_key_is_refused() -> None:
    batch = parse_any(
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"x","params":{"k":1,"k":2}}]'
    )
    assert isinstance(batch, list)
    first, second = batch
    assert isinstance(first, Message)
    assert isinstance(second, EnvelopeError)
    assert (second.reason, second.request_id) == ("duplicate_key", 2)


def test_a_tools_call_without_an_id_is_refused_and_other_notifications_are_not() -> None:
    """Issue 22 point 8: a tools/call notification could not be governed or answered."""
    with pytest.raises(EnvelopeError) as caught:
        parse(b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}')
    assert (caught.value.code, caught.value.reason) == (INVALID_REQUEST, "notification_tool_call")
    assert parse(b'{"jsonrpc":"2.0","method":"notifications/cancelled"}').kind is Kind.NOTIFICATION


def test_utf16_bodies_are_still_read_as_json_reads_them() -> None:
    raw = '{"jsonrpc":"2.0","id":1,"method":"ping"}'.encode("utf-16")
    assert parse(raw).method == "ping"


def test_a_body_nested_past_the_depth_cap_is_refused_before_it_is_parsed() -> None:
    """Issue 16: a body nested a few thousand levels deep raised RecursionError (HTTP 500)."""
    with pytest.raises(EnvelopeError) as caught:
        parse(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    assert (caught.value.code, caught.value.reason) == (INVALID_REQUEST, "input_limit_exceeded")
    assert caught.value.detail == {"limit": "max_json_depth", "max": 64}


def test_without_caps_a_body_nested_too_deeply_to_parse_is_a_parse_error() -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, limits=None)
    assert caught.value.code == PARSE_ERROR


def test_a_repeated_key_deep_in_a_body_is_found_without_recursing() -> None:
    depth = 500
    raw = (
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":'
        + b'{"a":' * depth
        + b'{"k":1,"k":2}'
        + b"}" * depth
        + b"}"
    )
    with pytest.raises(EnvelopeError) as caught:
        parse(raw, limits=None)  # the duplicate walk itself must not recurse
    assert caught.value.detail is not None
    assert caught.value.detail["duplicate_key"] == "params" + ".a" * depth + ".k"


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        # Colons inside strings, beside and inside the repeated key.
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"u":"http://h:1","k:":1,"k:":2}}', "params.k:"),
        # A colon spelled as an escape would make up for the dropped member in a colon count.
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"a":2,"b":"\\u003a"}}', "params.a"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"a":2,"b":"\\u003A"}}', "params.a"),
    ],
)
def test_a_repeated_key_is_refused_whatever_colons_the_strings_hold(raw: bytes, where: str) -> None:
    """The fast parser keeps the last of a repeated key; the colon count must still see it."""
    with pytest.raises(EnvelopeError) as caught:
        parse(raw)
    assert caught.value.detail is not None
    assert caught.value.detail["duplicate_key"] == where


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (b"18446744073709551616", 2**64),
        (b"-9223372036854775809", -(2**63) - 1),
        (b"123456789012345678901234567890", 123456789012345678901234567890),
        (b"NaN", None),
    ],
)
def test_numbers_outside_rfc_8259_or_64_bits_are_read_as_the_standard_decoder_reads_them(
    literal: bytes, value: int | None
) -> None:
    """orjson reads an integer past 64 bits as a float and refuses NaN: such bodies take the
    standard path, so an amount or id stays exact."""
    message = parse(b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":' + literal + b"}}")
    assert message.params is not None
    n = message.params["n"]
    if value is None:
        assert n != n  # NaN
    else:
        assert (type(n), n) == (int, value)


# -- dumps: orjson where its bytes are the standard encoder's, the standard encoder elsewhere --------


def _standard(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_dumps_gives_the_standard_encoders_bytes_for_every_kind_of_value() -> None:
    rng = random.Random(7)
    floats = [
        0.1,
        1.0,
        -0.0,
        1e-4,
        1e-5,
        1e15,
        1e16,
        1e22,
        5e-324,
        1.7976931348623157e308,
        0.30000000000000004,
    ]
    floats += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(3000)]
    floats += [rng.uniform(-1e6, 1e6) for _ in range(1000)] + [
        round(rng.uniform(0, 1e4), 3) for _ in range(1000)
    ]
    values: list[Any] = [{"f": f} for f in floats]
    values += [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"content": [{"type": "text", "text": "ok"}], "isError": False},
        },
        {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
        {"none": None, "text": "nullable"},
        {3: "int key", 2.5: "float key", True: "bool key", None: "none key"},
        {"big": 2**64, "small": -(2**63) - 1, "max": 2**63 - 1},
        ["é", "\u2028\u2029", "\x00\x1f\x7f", '"\\/', "😀", "1e5 in a string", "0.00001"],
        (1, 2, 3),
        1e16,
        float("nan"),
        None,
        "top-level text",
        [1e-05, [0.00001, -1e22], {"n": [float("inf")]}],
    ]
    for cp in range(0, 0x110000, 7):
        if not 0xD800 <= cp <= 0xDFFF:
            values.append({chr(cp): chr(cp) + "x"})
    for value in values:
        assert dumps(value) == _standard(value), value


def test_dumps_refuses_what_the_standard_encoder_refuses() -> None:
    import dataclasses
    from datetime import UTC, datetime

    @dataclasses.dataclass
    class Point:
        x: int

    for value in ({"when": datetime.now(UTC)}, {"p": Point(1)}, {"o": object()}):
        with pytest.raises(TypeError):
            dumps(value)


def _forbid_the_standard_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> str:
        raise AssertionError("the standard encoder was used")

    monkeypatch.setattr(json, "dumps", refuse)


def test_dumps_takes_the_fast_path_for_a_typical_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_the_standard_encoder(monkeypatch)
    payload = {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "é ok"}]}}
    assert (
        dumps(payload)
        == '{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"é ok"}]}}'.encode()
    )


def test_dumps_keeps_the_fast_path_when_only_strings_look_like_null_or_exponents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call id is hex (``...9e4f...``): text inside strings must not send a reply to the slow path."""
    payload = {
        "result": {
            "_meta": {"io.gethelio/call-id": "0193e4a1b2c39e4f7a8b9c0d1e2f3a4b"},
            "content": [{"type": "text", "text": "null 1e5 0.00001 x1E9"}],
        },
        "id": "7e3",
    }
    expected = _standard(payload)
    _forbid_the_standard_encoder(monkeypatch)
    assert dumps(payload) == expected


# -- read_json: an upstream's answer, read as the standard decoder reads it ----------------------


def _standard_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down, key order included (NaN equal to itself);
    walked with a stack, since some bodies nest deeper than the recursion limit allows."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, dict):
            if list(x) != list(y):  # pyright: ignore[reportUnknownArgumentType]
                return False
            pending += [(x[k], y[k]) for k in x]  # pyright: ignore[reportUnknownVariableType]
        elif isinstance(x, list):
            if len(x) != len(y):  # pyright: ignore[reportUnknownArgumentType]
                return False
            pending += list(zip(x, y, strict=True))  # pyright: ignore[reportUnknownArgumentType]
        elif isinstance(x, float):
            if struct.pack("<d", x) != struct.pack("<d", y) and not (x != x and y != y):
                return False
        elif x != y:
            return False
    return True


ODD_BODIES = [
    b'{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}',
    b'{"a":1,"b":2,"a":3}',  # a repeated key: the last value, at the first one's place
    b'{"n":NaN,"m":Infinity,"o":-Infinity}',
    b'{"n":18446744073709551616,"m":-9223372036854775809}',
    b'{"n":1234567890123456789012345678901234567890}',
    b'{"f":1e400,"g":-0.0,"h":1.0e+2,"i":5e-324}',
    b'{"s":"\\ud800 alone"}',
    b'{"s":"\\udfff"}',
    b'{"s":"\\ud83d\\ude00 pair"}',
    b'{"s":"caf\xc3\xa9 \\u00e9"}',
    b'{"s":"a\x01b"}',  # a raw control character inside a string
    b'{"s":"\xff"}',  # invalid UTF-8
    b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
    '{"s":"x"}'.encode("utf-16"),
    '{"s":"x"}'.encode("utf-16-le"),
    b"[1,]",
    b'{"a":1} trailing',
    b"",
    b"   ",
    b"null",
    b"[]",
    b'{"d":' + b"9" * 5000 + b"}",  # over Python's digit limit
    b"[" * 512 + b"]" * 512,  # the deepest a small body can nest
    b"[" * 1010 + b"]" * 1010,  # between the two parsers' depth limits
    b"[" * 2000 + b"]" * 2000,
    # A larger body of each kind above: the standard decoder reads it either way.
    b'{"pad":"' + b"x" * 1100 + b'","n":NaN,"big":18446744073709551616,"a":1,"a":2}',
]


@pytest.mark.parametrize("raw", ODD_BODIES, ids=range(len(ODD_BODIES)))
def test_read_json_reads_what_the_standard_decoder_reads(raw: bytes) -> None:
    assert _same(read_json(raw), _standard_or_none(raw))


def test_read_json_reads_floats_and_strings_as_the_standard_decoder_does() -> None:
    rng = random.Random(12)
    values: list[Any] = []
    for _ in range(3000):
        bits = rng.getrandbits(64)
        number = struct.unpack("<d", struct.pack("<Q", bits))[0]
        if number == number and abs(number) != float("inf"):
            values.append(number)
    values += [rng.uniform(-1e6, 1e6) for _ in range(2000)]
    values += ["".join(chr(c) for c in range(start, start + 40)) for start in range(32, 0x3000, 97)]
    for value in values:
        raw = json.dumps({"v": value, "l": [value]}, ensure_ascii=bool(rng.getrandbits(1))).encode()
        assert _same(read_json(raw), json.loads(raw)), raw
