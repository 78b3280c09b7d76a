"""Header/body agreement (MCP 2026-07-28 "Server Validation"): the pure check the gateway runs first."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helio_proxy.gateway.agreement import decode_header_value, header_mismatch
from helio_proxy.gateway.eras import opening_era, pin_refusal
from helio_proxy.jsonrpc import INVALID_REQUEST, Message, parse

ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def _message(method: str, params: dict[str, Any] | None = None, *, request_id: int | None = 1) -> Message:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        body["id"] = request_id
    if params is not None:
        body["params"] = params
    return parse(json.dumps(body).encode())


def _modern_call(name: str = "get_weather") -> Message:
    return _message("tools/call", {"name": name, "arguments": {}, "_meta": ENVELOPE})


MODERN_HEADERS = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "get_weather"}


def test_agreeing_modern_headers_pass() -> None:
    assert header_mismatch(_modern_call(), MODERN_HEADERS) is None


@pytest.mark.parametrize(
    ("headers", "header"),
    [
        ({**MODERN_HEADERS, "mcp-method": "tools/list"}, "Mcp-Method"),
        ({**MODERN_HEADERS, "mcp-name": "delete_user"}, "Mcp-Name"),
        ({**MODERN_HEADERS, "mcp-protocol-version": "2025-11-25"}, "MCP-Protocol-Version"),
        ({k: v for k, v in MODERN_HEADERS.items() if k != "mcp-method"}, "Mcp-Method"),
        ({k: v for k, v in MODERN_HEADERS.items() if k != "mcp-name"}, "Mcp-Name"),
        ({k: v for k, v in MODERN_HEADERS.items() if k != "mcp-protocol-version"}, "MCP-Protocol-Version"),
        ({**MODERN_HEADERS, "mcp-name": "=?base64?not base64!?="}, "Mcp-Name"),
    ],
)
def test_a_modern_request_whose_headers_disagree_or_are_missing_is_a_mismatch(
    headers: dict[str, str], header: str
) -> None:
    mismatch = header_mismatch(_modern_call(), headers)
    assert mismatch is not None
    assert mismatch.header == header


def test_legacy_requests_need_no_mirror_headers_but_sent_ones_must_agree() -> None:
    call = _message("tools/call", {"name": "get_weather", "arguments": {}})
    assert header_mismatch(call, {"mcp-protocol-version": "2025-06-18"}) is None
    assert header_mismatch(call, {"mcp-method": "tools/call", "mcp-name": "get_weather"}) is None
    mismatch = header_mismatch(call, {"mcp-name": "get_weather_v2"})
    assert mismatch is not None
    assert mismatch.header == "Mcp-Name"
    listing = _message("tools/list")
    mismatch = header_mismatch(listing, {"mcp-method": "tools/call"})
    assert mismatch is not None
    assert mismatch.header == "Mcp-Method"


def test_a_name_outside_plain_ascii_is_compared_after_sentinel_decoding() -> None:
    """Value Encoding: ``=?base64?<UTF-8 bytes, base64>?=``, decoded before comparing."""
    call = _modern_call("météo")
    encoded = "=?base64?bcOpdMOpbw==?="
    assert decode_header_value(encoded) == "météo"
    assert header_mismatch(call, {**MODERN_HEADERS, "mcp-name": encoded}) is None
    # the raw UTF-8 bytes, as an ASGI server hands them over (latin-1), are not the name
    raw = "météo".encode().decode("latin-1")
    assert header_mismatch(call, {**MODERN_HEADERS, "mcp-name": raw}) is not None


def test_resources_read_mirrors_the_uri_and_prompts_get_the_name() -> None:
    read = _message("resources/read", {"uri": "test://a", "_meta": ENVELOPE})
    headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": "resources/read"}
    assert header_mismatch(read, {**headers, "mcp-name": "test://a"}) is None
    assert header_mismatch(read, {**headers, "mcp-name": "test://b"}) is not None
    prompt = _message("prompts/get", {"name": "p"})
    assert header_mismatch(prompt, {"mcp-name": "q"}) is not None


def test_notifications_are_compared_only_on_headers_they_send() -> None:
    note = _message("notifications/initialized", request_id=None)
    assert header_mismatch(note, {}) is None
    assert header_mismatch(note, {"mcp-method": "notifications/cancelled"}) is not None


def test_the_era_comes_from_the_body() -> None:
    assert opening_era(_modern_call()) == ("modern", "2026-07-28")
    initialize = _message("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
    assert opening_era(initialize) == ("legacy", "2025-11-25")
    assert opening_era(_message("tools/list")) is None  # inside a legacy session


def test_a_pin_refuses_the_other_eras_opening_and_passes_its_own() -> None:
    initialize = _message("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
    assert pin_refusal(_modern_call(), "auto") is None
    assert pin_refusal(initialize, "auto") is None
    assert pin_refusal(initialize, "2025-06-18") is None  # same era: the upstream negotiates
    assert pin_refusal(_modern_call(), "2026-07-28") is None
    for message, pin in ((_modern_call(), "2025-06-18"), (initialize, "2026-07-28")):
        refusal = pin_refusal(message, pin)
        assert refusal is not None
        assert refusal.status == 400
        assert refusal.payload["error"]["code"] == INVALID_REQUEST
        assert refusal.payload["error"]["data"]["supported"] == [pin]
        assert refusal.payload["error"]["data"]["reason"] == "protocol_pinned"
