"""The gateway seam: check before forwarding, record after (calls and ``evidence.produces``)."""

from __future__ import annotations

from pathlib import Path

from helio_proxy.config import HelioConfig, parse_config_text
from helio_proxy.config.policies import Rule
from helio_proxy.evidence import EvidenceService, InMemorySessionStore, SqlSessionStore, StoreLimits
from helio_proxy.session import SessionIdentity
from helio_proxy.store.testing import temporary_store
from tests.unit.evidence.manual_clock import ManualClock

CONFIG = """
version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
dashboard: {enabled: false}
policies:
  rules:
    - match: {tool: orders.lookup}
      evidence: {produces: order_data, ttl: 2m}
    - match: {tool: orders.refund}
      evidence: {requires: [order_data], verified: true}
      requires: [orders.lookup]
"""
OK = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "order 7"}]}}
IS_ERROR = {"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": True}}
ALICE = SessionIdentity("alice", "header")
NOBODY = SessionIdentity(None)


def setup(clock: ManualClock) -> tuple[EvidenceService, HelioConfig]:
    config = parse_config_text(CONFIG)
    return EvidenceService(InMemorySessionStore(clock=clock), lambda: config, clock=clock), config


def rules(config: HelioConfig) -> tuple[Rule, Rule]:
    lookup, refund = config.policies.rules
    return lookup, refund


async def test_a_succeeded_producing_call_unlocks_a_verified_gate(clock: ManualClock) -> None:
    service, config = setup(clock)
    lookup, refund = rules(config)
    blocked = await service.check("orders.refund", refund, ALICE)
    assert blocked.missing_evidence == ("order_data",)
    assert blocked.missing_dependencies == ("orders.lookup",)
    assert "orders.lookup" in blocked.suggestion  # the producer is named
    assert await service.completed("orders.lookup", lookup, ALICE, "c1", OK)
    assert (await service.check("orders.refund", refund, ALICE)).passed
    state = await service.store.snapshot("alice")
    produced = state.evidence["order_data"]
    assert produced.verified
    assert produced.call_id == "c1"
    assert produced.expires_at == clock.ms + 120_000
    clock.advance(120)
    assert (await service.check("orders.refund", refund, ALICE)).reason == "evidence_expired"


async def test_an_is_error_result_produces_nothing_and_unlocks_nothing(clock: ManualClock) -> None:
    service, config = setup(clock)
    lookup, refund = rules(config)
    await service.completed("orders.lookup", lookup, ALICE, "c1", IS_ERROR)
    result = await service.check("orders.refund", refund, ALICE)
    assert result.missing_evidence == ("order_data",)
    assert result.missing_dependencies == ("orders.lookup",)
    state = await service.store.snapshot("alice")
    assert [(c.call_id, c.succeeded) for c in state.completed_tools] == [("c1", False)]


async def test_an_upstream_failure_is_recorded_as_a_failed_call(clock: ManualClock) -> None:
    service, config = setup(clock)
    lookup, _ = rules(config)
    await service.completed("orders.lookup", lookup, ALICE, "c1", None)
    assert (await service.store.snapshot("alice")).called_tools == {"orders.lookup"}


async def test_calls_in_another_session_do_not_count(clock: ManualClock) -> None:
    service, config = setup(clock)
    lookup, refund = rules(config)
    await service.completed("orders.lookup", lookup, SessionIdentity("bob", "header"), "c1", OK)
    assert not (await service.check("orders.refund", refund, ALICE)).passed


async def test_unresolved_calls_are_neither_recorded_nor_let_through_a_gate(clock: ManualClock) -> None:
    service, config = setup(clock)
    lookup, refund = rules(config)
    assert await service.completed("orders.lookup", lookup, NOBODY, "c1", OK)
    assert isinstance(service.store, InMemorySessionStore)
    assert service.store.session_count == 0
    result = await service.check("orders.refund", refund, NOBODY)
    assert result.reason == "policy_denied"
    assert (await service.check("orders.lookup", lookup, NOBODY)).passed


async def test_a_full_store_does_not_fail_the_call_it_records(clock: ManualClock) -> None:
    config = parse_config_text(CONFIG)
    store = InMemorySessionStore(clock=clock, limits=StoreLimits(max_sessions=1))
    service = EvidenceService(store, lambda: config, clock=clock)
    lookup, refund = rules(config)
    assert await service.completed("orders.lookup", lookup, ALICE, "c1", OK)
    assert not await service.completed("orders.lookup", lookup, SessionIdentity("bob", "header"), "c2", OK)
    assert not (await service.check("orders.refund", refund, SessionIdentity("bob", "header"))).passed


async def test_a_store_backed_session_store_that_fails_does_not_fail_the_call_it_records(
    clock: ManualClock, tmp_path: Path
) -> None:
    config = parse_config_text(CONFIG)
    with temporary_store("sqlite", tmp_path) as sql:
        service = EvidenceService(SqlSessionStore(sql, clock=clock), lambda: config, clock=clock)
        lookup, _refund = rules(config)
        assert await service.completed("orders.lookup", lookup, ALICE, "c1", OK)
        sql.close_sync()  # the database is gone: the write fails, the call is not remembered
        assert not await service.completed("orders.lookup", lookup, ALICE, "c2", OK)


async def test_a_store_backed_session_store_that_cannot_be_read_fails_the_gate_check_closed(
    clock: ManualClock, tmp_path: Path
) -> None:
    config = parse_config_text(CONFIG)
    with temporary_store("sqlite", tmp_path) as sql:
        service = EvidenceService(SqlSessionStore(sql, clock=clock), lambda: config, clock=clock)
        lookup, _refund = rules(config)
        sql.close_sync()
        result = await service.check("orders.lookup", lookup, ALICE)
    assert (result.passed, result.reason, result.retry_allowed) == (False, "store_unavailable", True)
    assert result.feedback_fields()["reason"] == "store_unavailable"
