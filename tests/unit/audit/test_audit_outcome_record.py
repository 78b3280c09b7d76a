"""The recorder's one mapping: a typed :class:`CallOutcome` (and the call's own facts) → its record.

Each test gives the recorder what the gateway gives it on one path and checks the record's fields,
including the order of ``metadata``'s keys, which the stored JSON keeps.
"""

from __future__ import annotations

from typing import Any

from helio_proxy.audit.clock import ManualClock
from helio_proxy.audit.recorder import Auditor, CallAudit, limits_metadata
from helio_proxy.audit.records import AnyRecord, ToolCallRecord
from helio_proxy.dataplane.facts import DataPlaneFacts, SchemaFacts
from helio_proxy.dataplane.scanning import Finding
from helio_proxy.dataplane.schemas import SchemaError
from helio_proxy.evidence.gates import PASSED, GateResult
from helio_proxy.governance import ApprovalFacts, CallOutcome, ChargeFacts, InvalidAmountFacts, LimitFacts
from helio_proxy.policy import Allow, Deny, DryRun, RequireApproval

SHA = "a" * 64


class Sink:
    def __init__(self) -> None:
        self.records: list[ToolCallRecord] = []

    def submit(self, record: AnyRecord) -> None:
        assert isinstance(record, ToolCallRecord)
        self.records.append(record)


def _begin(sink: Sink, *, request_id: int | None = 9, upstream: str | None = "crm") -> CallAudit:
    auditor = Auditor(sink, config_sha256="b" * 64, clock=ManualClock())
    params = {"name": "refund", "arguments": {"order": "o-1"}}
    return auditor.begin(
        params, request_id, {"x-helio-session-id": "s-1"}, agent_id="agent-7", upstream=upstream
    )


CHARGE = ChargeFacts("rate", "refunds", "rate:refunds:s-1", "1", "2", "5", "1m", True)
LIMITS = LimitFacts(charged=True, charges=(CHARGE,))


def _forward(call: CallAudit) -> None:
    call.forwarding()({"jsonrpc": "2.0", "id": 9, "result": {"content": []}}, None)


async def test_a_forwarded_approved_call_carries_the_decision_gate_approval_limits_and_shadow() -> None:
    sink = Sink()
    call = _begin(sink)
    ask = RequireApproval(rule="refunds", rule_index=1, reason="rule_matched", gate=PASSED)
    approved = ApprovalFacts("approved", 120.0, approved_by="alice", chain={"approval": {"ticket_id": "t-1"}})
    shadow = Deny(rule="stricter", rule_index=0, reason="policy_denied")
    allowed = Allow(rule="refunds", rule_index=1, reason="rule_matched")
    call.conclude(CallOutcome("refund", ask, allowed, shadow, SHA, approvals=(approved,), limits=LIMITS))
    _forward(call)
    await call.settle(200)
    [record] = sink.records
    assert (record.policy_decision, record.block_reason) == ("require_approval", None)
    assert (record.matched_rule, record.matched_rule_index) == ("refunds", 1)
    assert (record.approval_status, record.approved_by, record.approval_wait_ms) == (
        "approved",
        "alice",
        120.0,
    )
    assert record.evidence_chain == {
        "gate": {"passed": True, "satisfied": []},
        "approval": {"ticket_id": "t-1"},
    }
    assert record.metadata is not None
    assert list(record.metadata) == ["request_id", "upstream", "shadow", "limits"]
    assert record.metadata["shadow"] == {
        "decision": "deny",
        "rule": "stricter",
        "rule_index": 0,
        "reason": "policy_denied",
    }
    assert record.metadata["limits"] == {
        "charged": True,
        "charges": [
            {
                "kind": "rate",
                "name": "refunds",
                "bucket": "rate:refunds:s-1",
                "amount": "1",
                "used_before": "2",
                "limit": "5",
                "window": "1m",
                "fits": True,
            }
        ],
    }
    assert (record.config_sha256, record.agent_id, record.session_id) == (SHA, "agent-7", "s-1")
    assert record.success is True


async def test_a_block_names_the_deny_its_reason_and_the_suggestion_the_agent_was_told() -> None:
    sink = Sink()
    call = _begin(sink)
    gate = GateResult(missing_evidence=("order_lookup",), suggestion="look the order up first")
    allow = Allow(rule="refunds", rule_index=1, reason="rule_matched", gate=gate)
    blocked = Deny(rule="refunds", rule_index=1, reason="evidence_missing", blocked_action="allow", gate=gate)
    told = {"reason": "evidence_missing", "suggestion": "call lookup_order"}
    call.block(CallOutcome("refund", allow, blocked, None, SHA, told=told))
    [record] = sink.records
    assert (record.policy_decision, record.block_reason) == ("allow", "evidence_missing")
    assert record.evidence_chain is not None
    assert record.evidence_chain["gate"]["suggestion"] == "call lookup_order"
    assert record.evidence_chain["gate"]["missing_evidence"] == ["order_lookup"]
    assert record.success is None


async def test_a_drift_block_records_the_drifted_aspects_instead_of_the_gate() -> None:
    sink = Sink()
    call = _begin(sink)
    drifted = Deny(
        reason="tool_definition_drift",
        blocked_action="tool_drift",
        drifted_aspects=("description",),
        gate=PASSED,
    )
    call.block(CallOutcome("refund", drifted, drifted))
    [record] = sink.records
    assert record.evidence_chain == {"tool_drift": {"drifted_aspects": ["description"]}}
    assert (record.policy_decision, record.block_reason) == ("tool_drift", "tool_definition_drift")


async def test_a_dry_run_records_what_would_have_happened_and_no_limits() -> None:
    sink = Sink()
    call = _begin(sink)
    would = Deny(rule="no-refunds", rule_index=0, reason="policy_denied")
    dry = DryRun(reason="dry_run", would=would, global_switch=True)
    call.block(CallOutcome("refund", dry, dry, None, SHA))
    [record] = sink.records
    assert (record.policy_decision, record.block_reason, record.dry_run) == ("deny", "policy_denied", True)
    assert record.matched_rule == "no-refunds"


async def test_two_holds_record_the_last_status_and_both_tickets_chains_in_order() -> None:
    sink = Sink()
    call = _begin(sink)
    ask = RequireApproval(rule="refunds", rule_index=1, reason="rule_matched")
    rule_hold = ApprovalFacts(
        "approved", 10.0, approved_by="alice", chain={"approval": {"t": 1}, "tool_drift": {"d": 1}}
    )
    budget_hold = ApprovalFacts("denied", 20.0, chain={"approval": {"t": 2}, "budget_approval": {"b": 1}})
    denied = Deny(rule="refunds", rule_index=1, reason="approval_denied", blocked_action="require_approval")
    call.block(
        CallOutcome("refund", ask, denied, None, SHA, approvals=(rule_hold, budget_hold), limits=LIMITS)
    )
    [record] = sink.records
    assert (record.approval_status, record.approval_wait_ms, record.approved_by) == ("denied", 20.0, "alice")
    assert record.evidence_chain == {
        "approval": {"t": 2},
        "tool_drift": {"d": 1},
        "budget_approval": {"b": 1},
    }
    assert record.block_reason == "approval_denied"


async def test_a_held_call_whose_client_left_keeps_its_policy_decision_with_the_disconnect_reason() -> None:
    sink = Sink()
    call = _begin(sink)
    ask = RequireApproval(rule="refunds", rule_index=1, reason="rule_matched", flagged_destructive=True)
    call.block(CallOutcome("refund", ask, ask, None, SHA, block_reason="client_disconnected"))
    [record] = sink.records
    assert (record.policy_decision, record.block_reason) == ("require_approval", "client_disconnected")
    assert record.flagged_destructive is True


async def test_the_data_planes_answer_check_extends_its_earlier_facts_in_place() -> None:
    sink = Sink()
    call = _begin(sink)
    allow = Allow(rule="refunds", rule_index=1, reason="rule_matched")
    flagged = Finding("ids", "employee_id", "pii", "arguments", "$.arguments.order", "flag")
    withheld = Finding("cards", "card_number", "custom", "results", "$.result.content[0].text", "block")
    call.data_plane(DataPlaneFacts(credential="ci-bot", rule="refunds", findings=(flagged,)))
    call.forwarded_arguments({"order": "[REDACTED]"})
    call.conclude(CallOutcome("refund", allow, allow, None, SHA, limits=LIMITS))
    schema = SchemaFacts("warn", (SchemaError("$.total", "a number", "type"),))
    call.answer_checked(
        DataPlaneFacts(rule="refunds", output_schema=schema, findings=(withheld,)), "sensitive_content"
    )
    _forward(call)
    await call.settle(200)
    [record] = sink.records
    assert record.metadata is not None
    assert list(record.metadata) == ["request_id", "upstream", "data_plane", "limits"]
    assert record.metadata["data_plane"] == {
        "credential": "ci-bot",
        "rule": "refunds",
        "output_schema": {
            "mode": "warn",
            "errors": [{"path": "$.total", "expected": "a number", "keyword": "type"}],
        },
        # Both scans' findings, the arguments' first: the answer's do not replace them.
        "findings": [flagged.as_dict(), withheld.as_dict()],
    }
    assert record.block_reason == "sensitive_content"
    assert record.tool_input == {"order": "[REDACTED]"}


async def test_an_answer_check_without_earlier_facts_comes_after_the_limits() -> None:
    sink = Sink()
    call = _begin(sink)
    allow = Allow(rule="refunds", rule_index=1, reason="rule_matched")
    call.conclude(CallOutcome("refund", allow, allow, None, SHA, limits=LIMITS))
    call.answer_checked(DataPlaneFacts(output_schema=SchemaFacts("warn", ())), None)
    _forward(call)
    await call.settle(200)
    [record] = sink.records
    assert record.metadata is not None
    assert list(record.metadata) == ["request_id", "upstream", "limits", "data_plane"]
    assert record.block_reason is None


async def test_a_refusal_puts_its_details_before_the_upstream_and_an_empty_one_still_has_metadata() -> None:
    sink = Sink()
    _begin(sink).reject("duplicate_key", metadata={"key": "name"})
    _begin(sink, request_id=None, upstream=None).reject("notification_call", metadata={})
    first, second = sink.records
    assert first.metadata is not None
    assert list(first.metadata.items()) == [("request_id", 9), ("key", "name"), ("upstream", "crm")]
    assert (first.policy_decision, first.block_reason) == ("rejected", "duplicate_key")
    assert second.metadata == {}


async def test_a_call_with_nothing_concluded_has_the_records_defaults() -> None:
    sink = Sink()
    call = _begin(sink, request_id=None, upstream=None)
    _forward(call)
    await call.settle(200)
    [record] = sink.records
    assert (record.policy_decision, record.block_reason, record.metadata) == ("allow", None, None)
    assert record.config_sha256 == "b" * 64


def test_limit_facts_map_to_metadata_limits_with_invalid_amounts_and_an_unresolved_session() -> None:
    budget = ChargeFacts("budget", "monthly", "budget:monthly", "3.50", "10", "100", "30d", True, "USD", 2)
    facts = LimitFacts(
        charged=False,
        charges=(budget,),
        invalid=(InvalidAmountFacts("spend", "pay", "not_a_number", "'x' is not a number"),),
        session_unresolved=("rate", "per-session"),
    )
    expected: dict[str, Any] = {
        "charged": False,
        "charges": [
            {
                "kind": "budget",
                "name": "monthly",
                "bucket": "budget:monthly",
                "amount": "3.50",
                "used_before": "10",
                "limit": "100",
                "window": "30d",
                "fits": True,
                "currency": "USD",
                "epoch": 2,
            }
        ],
        "invalid": [
            {
                "kind": "spend",
                "name": "pay",
                "invalid_amount": "not_a_number",
                "detail": "'x' is not a number",
            }
        ],
        "session_unresolved": {"kind": "rate", "name": "per-session"},
    }
    assert limits_metadata(facts) == expected
    assert list(limits_metadata(facts)) == list(expected)
