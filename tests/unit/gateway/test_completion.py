"""The call id in a forwarded result: spliced into the upstream's bytes, or the message encoded again."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from helio_proxy.evidence.gates import CALL_ID_META_KEY
from helio_proxy.gateway.completion import CompletionRecorder, spliced, stamped
from helio_proxy.gateway.exchange import JsonReply
from helio_proxy.session.identity import UNRESOLVED

CALL_ID = "0193e4a1b2c39e4f7a8b9c0d1e2f3a4b"


def _recorder() -> CompletionRecorder:
    return CompletionRecorder(None, "echo", None, UNRESOLVED)  # type: ignore[arg-type]  # stamp needs no service


def _stamp(body: bytes) -> JsonReply:
    payload = json.loads(body)
    recorder = _recorder()
    recorder.call_id = CALL_ID
    recorder.observe(payload, None)
    reply = recorder.stamp(JsonReply(200, body, {"x-up": "1"}, payload))
    assert isinstance(reply, JsonReply)
    return reply


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}',
        b'{"jsonrpc":"2.0","id":1,"result":{}}',
        b'{ "jsonrpc": "2.0", "id": "a}", "result": { "text": "}}" } }\r\n',
        b'{\n  "id": 1,\n  "jsonrpc": "2.0",\n  "result": {\n  }\n}\n',
        '{"jsonrpc":"2.0","id":1,"result":{"text":"caf\\u00e9 \u00e9t\u00e9"}}'.encode(),
    ],
)
def test_the_call_id_is_written_into_the_result_and_every_other_byte_kept(body: bytes) -> None:
    reply = _stamp(body)
    payload = json.loads(body)
    assert json.loads(reply.body) == stamped(payload, CALL_ID)
    assert reply.payload == stamped(payload, CALL_ID)
    assert reply.payload["result"]["_meta"] == {CALL_ID_META_KEY: CALL_ID}
    assert (reply.status, reply.headers) == (200, {"x-up": "1"})
    # Nothing but the member is added: the upstream's spacing and escapes stay as they were.
    meta = b'"_meta":{"' + CALL_ID_META_KEY.encode() + b'":"' + CALL_ID.encode() + b'"}'
    assert reply.body.replace(b"," + meta, b"").replace(meta, b"") == body


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"jsonrpc":"2.0","result":{"a":1},"id":1}', "the result is not the last member"),
        (b'{"jsonrpc":"2.0","id":1,"result":{"_meta":{"k":"v"},"a":1}}', "the result has a _meta"),
    ],
)
def test_a_message_the_id_cannot_be_spliced_into_is_encoded_again(body: bytes, why: str) -> None:
    payload = json.loads(body)
    assert spliced(body, payload, CALL_ID) is None, why
    reply = _stamp(body)
    assert json.loads(reply.body) == stamped(payload, CALL_ID)
    assert reply.body == json.dumps(stamped(payload, CALL_ID), separators=(",", ":")).encode()
    if "_meta" in payload["result"]:
        assert reply.payload["result"]["_meta"] == {"k": "v", CALL_ID_META_KEY: CALL_ID}


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"no"}}',
        b'{"jsonrpc":"2.0","id":1,"result":[1,2]}',
        b'{"jsonrpc":"2.0","id":1,"result":"text"}',
    ],
)
def test_an_answer_without_a_result_object_is_relayed_unchanged(body: bytes) -> None:
    assert _stamp(body).body == body


def test_a_reply_that_is_not_the_observed_answer_is_not_stamped() -> None:
    body = b'{"jsonrpc":"2.0","id":1,"result":{}}'
    recorder = _recorder()
    recorder.observe(json.loads(body), None)
    other = JsonReply(200, body, {}, json.loads(body))  # e.g. the data plane's rewritten answer
    assert recorder.stamp(other) is other


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(6 if depth < 3 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**40, 1.5, -2.25e-7])
    if kind == 2:
        return "".join(rng.choice('ab}{ "\\\u00e9\u2028,:') for _ in range(rng.randrange(6)))
    if kind == 3:
        return {}
    if kind == 4:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {f"k{i}}}": _value(rng, depth + 1) for i in range(rng.randrange(4))}


def test_spliced_bodies_parse_as_the_stamped_message_for_random_results() -> None:
    rng = random.Random(20261205)
    for _ in range(500):
        message = {"jsonrpc": "2.0", "id": _value(rng, 2) if rng.random() < 0.3 else 1}
        message["result"] = {f"r{i}": _value(rng, 0) for i in range(rng.randrange(4))}
        indent = rng.choice([None, 0, 2])
        body = json.dumps(message, indent=indent, ensure_ascii=rng.random() < 0.5).encode()
        body += rng.choice([b"", b"\n", b" \r\n"])
        payload = json.loads(body)
        out = spliced(body, payload, CALL_ID)
        assert out is not None
        assert json.loads(out) == stamped(payload, CALL_ID)
