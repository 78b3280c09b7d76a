"""JSON-RPC classification of incoming messages."""

from __future__ import annotations

import pytest

from helio_proxy.jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    EnvelopeError,
    Kind,
    Message,
    error_payload,
    is_response_for,
    parse,
    parse_any,
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
