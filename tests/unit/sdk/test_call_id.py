"""``helio.call_id_of``: the proxy's call id read from a ``tools/call`` result, in every shape."""

from __future__ import annotations

from mcp.types import CallToolResult, TextContent

import helio
from helio import HelioContext, call_id_of

KEY = "io.gethelio/call-id"


def test_the_call_id_is_read_from_the_official_sdks_call_tool_result() -> None:
    result = CallToolResult(content=[TextContent(type="text", text="ok")], _meta={KEY: "c-1"})
    assert call_id_of(result) == "c-1"
    assert HelioContext.call_id_of(result) == "c-1"


def test_the_call_id_is_read_from_a_result_dict_and_from_a_whole_jsonrpc_response() -> None:
    result = {"content": [], "_meta": {KEY: "c-2", "other": 1}}
    assert call_id_of(result) == "c-2"
    assert call_id_of({"jsonrpc": "2.0", "id": 1, "result": result}) == "c-2"


def test_a_result_without_the_key_or_with_a_non_string_id_has_no_call_id() -> None:
    assert call_id_of({"content": []}) is None
    assert call_id_of({"content": [], "_meta": {KEY: 7}}) is None
    assert call_id_of({"content": [], "_meta": {KEY: ""}}) is None
    assert call_id_of(CallToolResult(content=[])) is None
    assert call_id_of(None) is None


def test_call_id_of_is_public() -> None:
    assert "call_id_of" in helio.__all__
