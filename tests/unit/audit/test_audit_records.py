import uuid
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from helio_proxy.audit.records import (
    DriftEventRecord,
    KillSwitchRecord,
    PolicyReloadRecord,
    ToolCallRecord,
    call_succeeded,
    response_summary,
)
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder, decode_row

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _result(**result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "result": result}


def test_success_means_no_jsonrpc_error_and_no_iserror_result() -> None:
    """The success rule: no JSON-RPC error AND result.isError is not true."""
    assert call_succeeded(_result(content=[]))
    assert call_succeeded(_result(content=[], isError=False))
    assert not call_succeeded(_result(content=[], isError=True))
    assert not call_succeeded({"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "x"}})
    assert not call_succeeded(None)


def test_the_response_summary_has_the_reference_fields() -> None:
    payload = _result(content=[{"type": "text", "text": "a"}, {"type": "image", "data": "b"}], isError=True)
    assert response_summary(payload) == {
        "success": False,
        "has_error": False,
        "error_code": None,
        "content_types": ["image", "text"],
        "content_count": 2,
    }
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad"}}
    assert response_summary(error)["error_code"] == -32602


def test_records_are_frozen_and_reject_unknown_fields() -> None:
    record = ToolCallRecord(timestamp=NOW, tool_name="t")
    with pytest.raises(pydantic.ValidationError):
        record.tool_name = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        ToolCallRecord(timestamp=NOW, tool_name="t", surprise=1)  # type: ignore[call-arg]


def test_a_row_scrubs_inputs_and_responses_before_serializing() -> None:
    record = ToolCallRecord(
        timestamp=NOW,
        tool_name="charge",
        tool_input={"api_key": "sk-live-abc", "card": "4111 1111 1111 1111"},
        upstream_response=_result(content=[{"type": "text", "text": "token=xyz ok"}]),
        success=True,
    )
    row = RowBuilder(Redactor()).build(record, "2026-03-01T12:00:01.000000Z")
    assert "sk-live-abc" not in row["tool_input"]
    assert "4111 1111" not in row["tool_input"]
    assert "xyz" not in row["upstream_response"]
    assert row["timestamp"] == "2026-03-01T12:00:00.000000Z"
    assert decode_row(row)["tool_input"] == {"api_key": "[REDACTED]", "card": "[CARD ...1111]"}


def test_without_include_responses_a_summary_is_stored_instead() -> None:
    record = ToolCallRecord(
        timestamp=NOW,
        tool_name="t",
        upstream_response=_result(content=[{"type": "text", "text": "s"}]),
        success=True,
    )
    row = decode_row(RowBuilder(Redactor(), include_responses=False).build(record, "c"))
    assert row["upstream_response"] == response_summary(record.upstream_response)


def test_kind_specific_fields_are_kept_in_metadata() -> None:
    builder = RowBuilder(Redactor())
    reload = decode_row(
        builder.build(
            PolicyReloadRecord(timestamp=NOW, outcome="rejected", error="bad yaml", metadata={"x": 1}), "c"
        )
    )
    assert reload["record_kind"] == "policy_reload"
    assert reload["metadata"] == {
        "outcome": "rejected",
        "before_sha256": None,
        "after_sha256": None,
        "rule_count": None,
        "budget_count": None,
        "removed_rules": [],
        "error": "bad yaml",
        "x": 1,
    }
    kill = decode_row(builder.build(KillSwitchRecord(timestamp=NOW, engaged=True, actor="ops"), "c"))
    assert kill["metadata"]["engaged"] is True
    assert kill["tool_name"] is None


def test_text_no_database_accepts_is_made_safe() -> None:
    record = ToolCallRecord(timestamp=NOW, tool_name="a\x00b\ud800", tool_input={"k": "nul\x00"})
    row = RowBuilder(Redactor()).build(record, "c")
    row["tool_name"].encode("utf-8")
    assert "\x00" not in row["tool_name"]


def test_a_trusted_record_equals_the_validated_one_with_defaults_and_factories_filled() -> None:
    values: dict[str, Any] = {
        "id": uuid.UUID(int=7),
        "timestamp": datetime(2026, 12, 5, 2, 0, tzinfo=UTC),
        "tool_name": "orders.lookup",
        "tool_input": {"order_id": "A-1"},
        "policy_decision": "allow",
        "metadata": {"request_id": 3},
        "upstream_http_status": 200,
        "total_duration_ms": 1.5,
    }
    record = ToolCallRecord.trusted(dict(values))
    assert record == ToolCallRecord(**values)
    assert record.model_dump() == ToolCallRecord(**values).model_dump()
    assert record.model_fields_set == set(values)
    assert (record.origin, record.dry_run, record.success, record.record_kind) == (
        "mcp",
        False,
        None,
        "tool_call",
    )
    bare = [ToolCallRecord.trusted({"timestamp": values["timestamp"], "tool_name": "t"}) for _ in range(2)]
    assert bare[0].id != bare[1].id  # each gets its own id and its own empty tool_input
    assert bare[0].tool_input == {}
    assert bare[0].tool_input is not bare[1].tool_input
    with pytest.raises(pydantic.ValidationError):
        record.tool_name = "other"  # frozen, as a validated record is
    drift = DriftEventRecord.trusted({"timestamp": values["timestamp"], "tool_name": "t"})
    assert drift == DriftEventRecord(timestamp=values["timestamp"], tool_name="t", id=drift.id)


def test_a_wrongly_typed_trusted_record_fails_the_test_that_builds_it() -> None:
    """tests/conftest.py validates every trusted record a test builds."""
    with pytest.raises(pydantic.ValidationError):
        ToolCallRecord.trusted(
            {"timestamp": datetime(2026, 12, 5, tzinfo=UTC), "tool_name": "t", "upstream_http_status": "x"}
        )
