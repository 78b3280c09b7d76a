import dataclasses

import pytest

import helio
from helio._models import parse_receipt, parse_session_state

ENTRY = {
    "evidence_key": "order_data",
    "data": {"id": 7},
    "tool_name": "orders.lookup",
    "timestamp": 1_700_000_000_000,
    "expires_at": 1_700_000_300_000,
    "verified": True,
    "call_id": "c1",
}


def test_a_full_state_payload_parses_into_frozen_typed_values():
    state = parse_session_state(
        {
            "session_id": "s1",
            "evidence": {"order_data": ENTRY},
            "context": {"tier": "gold"},
            "completed_tools": [
                {
                    "tool_name": "orders.lookup",
                    "timestamp": 1_700_000_000_000,
                    "succeeded": True,
                    "call_id": "c1",
                }
            ],
            "dependencies": [{"tool_name": "orders.refund", "requires": ["orders.lookup"]}],
        }
    )

    assert state == helio.SessionState(
        session_id="s1",
        evidence={
            "order_data": helio.EvidenceEntry(
                "order_data", {"id": 7}, "orders.lookup", 1_700_000_000_000, 1_700_000_300_000, True, "c1"
            )
        },
        context={"tier": "gold"},
        completed_tools=[helio.CompletedTool("orders.lookup", 1_700_000_000_000, True, "c1")],
        dependencies=[helio.DeclaredDependency("orders.refund", ["orders.lookup"])],
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.session_id = "other"  # type: ignore[misc]


def test_unknown_fields_are_ignored_and_fields_newer_than_helio_client_0_16_default():
    entry = {key: value for key, value in ENTRY.items() if key not in ("verified", "call_id", "evidence_key")}
    state = parse_session_state(
        {
            "session_id": "s1",
            "evidence": {"order_data": {**entry, "future_field": 1}},
            "completed_tools": [{"tool_name": "t", "timestamp": 1, "succeeded": False}],
            "something_new": [],
        }
    )

    parsed = state.evidence["order_data"]
    assert parsed.evidence_key == "order_data"
    assert parsed.verified is False
    assert parsed.call_id is None
    assert state.context == {}
    assert state.dependencies == []
    assert state.completed_tools[0].call_id is None


def test_an_iso_timestamp_as_sent_by_the_typescript_proxy_is_read_as_epoch_milliseconds():
    state = parse_session_state(
        {"session_id": "s1", "evidence": {"k": {**ENTRY, "timestamp": "2023-11-14T22:13:20.000Z"}}}
    )

    assert state.evidence["k"].timestamp == 1_700_000_000_000


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"evidence": {}},
        {"session_id": 3},
        {"session_id": "s", "evidence": []},
        {"session_id": "s", "evidence": {"k": "not an object"}},
        {"session_id": "s", "evidence": {"k": {**ENTRY, "expires_at": "soon"}}},
        {"session_id": "s", "evidence": {"k": {**ENTRY, "expires_at": True}}},
        {"session_id": "s", "evidence": {"k": {**ENTRY, "verified": "yes"}}},
        {"session_id": "s", "evidence": {"k": {**ENTRY, "call_id": 5}}},
        {"session_id": "s", "context": ["not", "an", "object"]},
        {"session_id": "s", "completed_tools": {}},
        {"session_id": "s", "completed_tools": [{"tool_name": "t", "timestamp": 1}]},
        {"session_id": "s", "dependencies": [{"tool_name": "t", "requires": [1]}]},
    ],
)
def test_a_malformed_state_payload_raises_a_protocol_error(payload):
    with pytest.raises(helio.HelioProtocolError):
        parse_session_state(payload)


def test_an_evidence_receipt_from_an_older_proxy_that_answers_only_ok_has_defaults():
    assert parse_receipt({"ok": True}, "order_data") == helio.EvidenceReceipt("order_data", None, False)


def test_an_evidence_report_exposes_the_state_fields_at_the_top_level_like_helio_client_0_16():
    state = parse_session_state({"session_id": "s1", "evidence": {"order_data": ENTRY}})
    report = helio.EvidenceStateReport(state, ["order_data", "x"], ["order_data"], ["x"])

    assert report.session_id == "s1"
    assert report.evidence is state.evidence
    assert report.context == {}
    assert report.completed_tools == []
    assert report.complete is False
