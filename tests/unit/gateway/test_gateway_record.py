"""What the gateway hands the recorder: one typed outcome per call, whose facts reach the record.

A stub enforcer answers with typed approval and limit facts (as the approval and limit gates do);
the tests check that the record and the outcome observers see the same facts, on the forwarded
path and on a block.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helio_proxy.audit import Auditor
from helio_proxy.config import load_config_text
from helio_proxy.gateway import Gateway, Inbound
from helio_proxy.gateway.exchange import JsonReply
from helio_proxy.gateway.snapshot import Snapshot, Snapshots
from helio_proxy.governance import (
    ApprovalFacts,
    CallOutcome,
    ChargeFacts,
    GovernedCall,
    LimitFacts,
    Settlement,
)
from helio_proxy.jsonrpc import parse
from helio_proxy.policy import Allow, Decision, Deny, RequireApproval
from tests.unit.gateway.fakes import EchoUpstream, Sink

CONFIG = (
    "version: '1'\n"
    "upstream:\n  url: 'http://127.0.0.1:9/mcp'\n"
    "dashboard:\n  enabled: true\n  api_secret: test-secret-0123456789abcdef\n"
    "policies:\n  default: deny\n  rules:\n    - name: ask\n"
    "      match: {tool: echo}\n      action: require_approval\n"
)

APPROVED = ApprovalFacts("approved", 5.0, approved_by="alice", chain={"approval": {"ticket_id": "t-1"}})
LIMITS = LimitFacts(
    charged=True, charges=(ChargeFacts("rate", "ask", "rate:ask", "1", "0", "3", "1m", True),)
)


class FactsEnforcer:
    """Settles a held call with typed facts: approved (forward) or over its rate limit (block)."""

    def __init__(self, *, limited: bool) -> None:
        self.limited = limited

    async def settle(self, decision: Decision, call: GovernedCall) -> Settlement:
        assert isinstance(decision, RequireApproval)
        if self.limited:
            blocked = Deny(
                rule=decision.rule,
                rule_index=decision.rule_index,
                reason="rate_limited",
                blocked_action="rate_limit",
            )
            return Settlement(blocked, approvals=(APPROVED,), limits=LimitFacts(charged=False))
        allowed = Allow(rule=decision.rule, rule_index=decision.rule_index, reason=decision.reason)
        return Settlement(allowed, approvals=(APPROVED,), limits=LIMITS)

    def peek(self, decision: Decision, call: GovernedCall) -> Settlement:
        raise AssertionError("not a dry run")

    def settled(self, decision: Decision) -> Settlement | None:
        return None  # every call goes through settle()


def _setup(tmp_path: Path, *, limited: bool) -> tuple[Gateway, Sink, list[CallOutcome], Snapshot]:
    snapshot = Snapshot.of(load_config_text(CONFIG, path=tmp_path / "helio.yaml"))
    sink = Sink()
    gateway = Gateway(
        EchoUpstream(),
        Snapshots(snapshot),
        auditor=Auditor(sink),
        enforcer=FactsEnforcer(limited=limited),
        upstream_name="crm",
    )
    outcomes: list[CallOutcome] = []
    gateway.observers.append(outcomes.append)
    return gateway, sink, outcomes, snapshot


def _call(request_id: int) -> Inbound:
    body: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"x": 1}},
    }
    return Inbound(message=parse(json.dumps(body).encode()), headers={"mcp-session-id": "s-1"})


async def test_an_approved_forwarded_call_records_the_enforcers_approval_and_limit_facts(
    tmp_path: Path,
) -> None:
    gateway, sink, outcomes, snapshot = _setup(tmp_path, limited=False)
    reply = await gateway.handle(_call(4))
    assert isinstance(reply, JsonReply)
    assert "result" in reply.payload
    [record] = sink.records
    assert (record.policy_decision, record.matched_rule, record.block_reason) == (
        "require_approval",
        "ask",
        None,
    )
    assert (record.approval_status, record.approved_by, record.approval_wait_ms) == ("approved", "alice", 5.0)
    assert record.evidence_chain == {"approval": {"ticket_id": "t-1"}}
    assert record.metadata is not None
    assert list(record.metadata) == ["request_id", "upstream", "limits"]
    assert record.metadata["limits"]["charged"] is True
    assert record.config_sha256 == snapshot.sha256
    assert record.success is True
    [outcome] = outcomes
    assert (outcome.approvals, outcome.limits, outcome.config_sha256) == (
        (APPROVED,),
        LIMITS,
        snapshot.sha256,
    )
    assert isinstance(outcome.enforced, Allow)


async def test_a_call_blocked_after_its_approval_records_the_block_with_both_stages_facts(
    tmp_path: Path,
) -> None:
    gateway, sink, outcomes, _ = _setup(tmp_path, limited=True)
    reply = await gateway.handle(_call(5))
    assert isinstance(reply, JsonReply)
    assert reply.payload["error"]["data"]["reason"] == "rate_limited"
    [record] = sink.records
    assert (record.policy_decision, record.block_reason) == ("rate_limit", "rate_limited")
    assert record.approval_status == "approved"
    assert record.metadata is not None
    assert record.metadata["limits"] == {"charged": False, "charges": []}
    assert record.success is None
    [outcome] = outcomes
    assert outcome.recorded is outcome.enforced
