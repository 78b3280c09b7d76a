"""What counts as a succeeded call, and the digest of a result."""

from __future__ import annotations

from typing import Any

import pytest

from helio_proxy.evidence import call_succeeded, new_call_id, result_digest


@pytest.mark.parametrize(
    ("response", "succeeded"),
    [
        ({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}, True),
        ({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": False}}, True),
        ({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": True}}, False),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "boom"}}, False),
        ({"jsonrpc": "2.0", "id": 1, "result": "not an object"}, False),
        (None, False),
    ],
)
def test_success_is_no_jsonrpc_error_and_no_is_error(response: Any, succeeded: bool) -> None:
    """DESIGN §4: success = no JSON-RPC error AND result.isError is not true."""
    assert call_succeeded(response) is succeeded


def test_result_digest_is_canonical_over_the_result_only() -> None:
    a = {"jsonrpc": "2.0", "id": 1, "result": {"b": 1, "a": [1, 2]}}
    b = {"id": 99, "result": {"a": [1, 2], "b": 1}, "jsonrpc": "2.0"}
    assert result_digest(a) == result_digest(b)
    assert result_digest(a).startswith("sha256:")
    assert result_digest(a) != result_digest({"result": {"a": [2, 1], "b": 1}})


def test_call_ids_are_unique_hex() -> None:
    ids = {new_call_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
