"""``helio.blocked()`` on the JSON-RPC shapes of a block (docs/policies.md, "What a blocked agent gets").

The real exceptions of the MCP SDK and the agent frameworks are in tests/integration/test_sdk_blocked.py.
"""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

import helio
from helio import Blocked

EVIDENCE_BLOCK: dict[str, Any] = {
    "code": -32001,
    "message": "Refunds need the order looked up first, in this session.",
    "data": {
        "blocked": True,
        "reason": "evidence_missing",
        "rule": "refund-needs-order-lookup",
        "rule_index": 0,
        "action": "allow",
        "suggestion": "Call orders.lookup, mark its result, then retry.",
        "retry_allowed": True,
        "missing_evidence": ["orders.lookup"],
        "expired_evidence": [],
        "unverified_evidence": [],
        "missing_dependencies": ["customer.verify"],
    },
}


class ShapedError(Exception):
    """An exception with the ``code``/``message``/``data`` attributes MCP clients give theirs."""

    def __init__(self, code: int, message: str, data: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def test_a_json_rpc_error_object_becomes_a_typed_block() -> None:
    block = helio.blocked(EVIDENCE_BLOCK)
    assert block == Blocked(
        reason="evidence_missing",
        message="Refunds need the order looked up first, in this session.",
        rule="refund-needs-order-lookup",
        rule_index=0,
        action="allow",
        suggestion="Call orders.lookup, mark its result, then retry.",
        retry_allowed=True,
        missing_evidence=["orders.lookup"],
        missing_dependencies=["customer.verify"],
        data=EVIDENCE_BLOCK["data"],
    )


def test_a_whole_json_rpc_response_is_read_through_its_error_member() -> None:
    block = helio.blocked({"jsonrpc": "2.0", "id": 3, "error": EVIDENCE_BLOCK})
    assert block is not None
    assert block.missing_evidence == ["orders.lookup"]


def test_a_rate_limit_block_carries_its_window_as_typed_values() -> None:
    data = {
        "blocked": True,
        "reason": "rate_limited",
        "rule": "slow-down",
        "rule_index": 2,
        "action": "rate_limit",
        "suggestion": "Wait until reset_at, then retry the call.",
        "retry_allowed": True,
        "current_calls": 5,
        "max_calls": 5,
        "window_seconds": 60,
        "reset_at": "2026-12-02T18:00:30Z",
    }
    block = helio.blocked({"code": -32001, "message": "Rate limit", "data": data})
    assert block is not None
    assert (block.current, block.max, block.window_seconds) == (5, 5, 60)
    assert block.reset_at == datetime(2026, 12, 2, 18, 0, 30, tzinfo=UTC)


def test_a_spend_limit_block_gives_its_amounts_as_decimals() -> None:
    data = {"blocked": True, "reason": "spend_limited", "current_spend": "99.50", "max_spend": "100.00"}
    block = helio.blocked({"code": -32001, "message": "m", "data": data})
    assert block is not None
    assert (block.current, block.max) == (Decimal("99.50"), Decimal("100.00"))
    assert block.retry_allowed is False
    assert block.missing_evidence == []


def test_a_block_wrapped_as_a_cause_in_a_group_or_as_an_argument_is_found() -> None:
    inner = ShapedError(-32001, EVIDENCE_BLOCK["message"], EVIDENCE_BLOCK["data"])
    try:
        try:
            raise inner
        except ShapedError as exc:
            raise RuntimeError("tool failed") from exc
    except RuntimeError as exc:
        chained = exc
    assert helio.blocked(inner) == helio.blocked(chained) == helio.blocked(EVIDENCE_BLOCK)
    group = ExceptionGroup("task group", [ValueError("other"), chained])
    assert helio.blocked(group) == helio.blocked(EVIDENCE_BLOCK)
    assert helio.blocked(RuntimeError("wrapped", inner)) == helio.blocked(EVIDENCE_BLOCK)


@pytest.mark.parametrize(
    "error",
    [
        None,
        "blocked",
        ValueError("nope"),
        {"code": -32603, "message": "upstream failed", "data": {"failure_class": "timeout"}},
        {"code": -32001, "message": "not ours", "data": {"reason": "x"}},
        {"code": -32001, "message": "no reason", "data": {"blocked": True}},
        {"code": -32001, "message": "no data"},
        ShapedError(-32602, "invalid params", {"blocked": True, "reason": "policy_denied"}),
    ],
)
def test_anything_that_is_not_a_helio_block_gives_none(error: object) -> None:
    assert helio.blocked(error) is None


def _replace_the_block() -> None:
    try:
        raise ShapedError(-32001, "blocked", EVIDENCE_BLOCK["data"])
    except ShapedError:
        raise RuntimeError("something else") from None


def test_a_block_suppressed_with_from_none_is_not_reported() -> None:
    with pytest.raises(RuntimeError) as raised:
        _replace_the_block()
    assert raised.value.__context__ is not None
    assert helio.blocked(raised.value) is None


def test_a_cycle_of_causes_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert helio.blocked(first) is None
