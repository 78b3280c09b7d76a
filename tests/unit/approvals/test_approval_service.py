"""The approval gate without HTTP in front: budget tickets, failed notifications, shutdown, and a
proxy that died while holding a call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_httpx import HTTPXMock

from helio_proxy.approvals import ApprovalService, TicketStatus, Verdict, arguments_digest
from helio_proxy.approvals.tickets import create_ticket
from helio_proxy.config import parse_config_text
from helio_proxy.config.policies import ApprovalRoute
from helio_proxy.gateway.enforcement import GovernedCall
from helio_proxy.operator import EventBus
from helio_proxy.policy import Allow, Deny, RequireApproval
from helio_proxy.policy.drift import canonical_json
from helio_proxy.policy.facts import CallFacts
from helio_proxy.session.identity import SessionIdentity
from helio_proxy.store import Store, time_text
from tests.unit.approvals.factories import ARGS, NOW, ticket

CONFIG = """
version: '1'
upstream: {url: 'http://127.0.0.1:1/mcp'}
dashboard: {api_secret: 'ssssssssssssssssssssssssssssssss'}
approval:
  default_on_timeout: allow
  channels:
    - {type: webhook, name: ops, url: 'https://hooks.example/ops'}
policies:
  rules:
    - name: approve
      match: {tool: pay}
      action: require_approval
      approval: {channel: ops, timeout: 1m}
"""


def call(arguments: dict[str, Any] = ARGS, session: str = "s1") -> GovernedCall:
    return GovernedCall(
        facts=CallFacts(tool="pay", arguments=arguments, session_id=session),
        identity=SessionIdentity(session, "header"),
        request_id=1,
        config_sha256="c" * 64,
    )


@pytest.fixture
async def service(store: Store) -> AsyncIterator[ApprovalService]:
    config = parse_config_text(CONFIG, source="test.yaml")
    made = ApprovalService(
        lambda: config, store, events=EventBus(), delivery_backoff=0.001, poll_interval=0.05
    )
    await made.start()
    try:
        yield made
    finally:
        await made.shutdown()


async def pending(service: ApprovalService) -> str:
    async with asyncio.timeout(10):
        while not service.held:  # noqa: ASYNC110 - polling state another task changes, bounded
            await asyncio.sleep(0.01)
    [(ticket_id,)] = [(t.id,) for t in (await service.list("pending", 10, 0))[0]]
    return ticket_id


RULE = RequireApproval(
    rule="approve", rule_index=0, reason="rule_matched", route=ApprovalRoute(channel="ops", timeout="1m")
)  # type: ignore[arg-type]


async def test_budget_tickets_fail_closed_on_timeout_even_when_rule_tickets_would_pass(
    service: ApprovalService, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url="https://hooks.example/ops", is_reusable=True)
    breached = [
        {
            "name": "monthly",
            "limit": "100",
            "current": "95",
            "amount": "10",
            "currency": "USD",
            "approval": ApprovalRoute(channel="ops", timeout="1s"),  # type: ignore[arg-type]
        }
    ]
    allow = Allow(rule="approve", rule_index=0, reason="rule_matched")
    settled = await service.hold_budget(allow, call(), breached)
    assert isinstance(settled.decision, Deny)
    assert settled.decision.reason == "approval_timeout"
    [facts] = settled.approvals
    chain = facts.chain
    assert chain is not None
    assert chain["approval"]["kind"] == "budget"
    assert chain["budget_approval"]["breached_budgets"][0]["name"] == "monthly"
    assert chain["budget_approval"]["breached_budgets"][0]["approval"]["timeout"] == "1s"


async def test_an_approved_budget_ticket_lets_the_call_go_on(service: ApprovalService) -> None:
    """A budget without an ``approval`` block routes to the dashboard (nothing is sent)."""
    allow = Allow(rule="approve", rule_index=0, reason="rule_matched")
    held = asyncio.create_task(service.hold_budget(allow, call(), [{"name": "monthly"}]))
    ticket_id = await pending(service)
    await service.decide(ticket_id, Verdict("alice", "approve", via="operator"))
    settled = await held
    assert settled.decision == allow
    assert [a.approved_by for a in settled.approvals] == ["alice"]


async def test_a_failed_notification_is_recorded_and_announced_and_the_ticket_stays_pending(
    service: ApprovalService, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url="https://hooks.example/ops", status_code=500, is_reusable=True)
    assert service.events is not None
    failures: list[dict[str, Any]] = []

    async def listen() -> None:
        async for event in service.events.subscribe(60):  # type: ignore[union-attr]
            if event.type == "approval_notification_failed":
                failures.append(event.data)
                return

    listener = asyncio.create_task(listen())
    held = asyncio.create_task(service.hold(RULE, call()))
    ticket_id = await pending(service)
    async with asyncio.timeout(10):
        await listener
        while not (stored := await service.get(ticket_id)) or not stored.notification_failures:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert stored.status == TicketStatus.PENDING
    [failure] = stored.notification_failures
    assert (failure["channel"], failure["stage"]) == ("ops", "requested")
    assert "HTTP 500" in failure["error"]
    assert failures[0]["ticket_id"] == ticket_id
    await service.decide(ticket_id, Verdict("alice", "deny", "no"))
    assert (await held).decision.reason == "approval_denied"  # type: ignore[union-attr]


async def test_shutdown_answers_held_calls_and_leaves_their_tickets_open(
    service: ApprovalService, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url="https://hooks.example/ops", is_reusable=True)
    held = asyncio.create_task(service.hold(RULE, call()))
    ticket_id = await pending(service)
    await service.shutdown()
    settled = await held
    assert isinstance(settled.decision, Deny)
    assert (settled.decision.reason, settled.decision.retry_allowed) == ("shutdown_cancelled", True)
    stored = await service.get(ticket_id)
    assert stored is not None
    assert (stored.status, stored.holder) == (TicketStatus.ORPHANED, None)
    late = await service.hold(RULE, call())
    assert isinstance(late.decision, Deny)
    assert late.decision.reason == "shutdown_cancelled"


async def test_a_ticket_whose_proxy_died_is_orphaned_and_its_approval_releases_the_retry(
    store: Store,
) -> None:
    now = datetime.now(UTC)
    died = ticket(
        holder="crashed",
        holder_seen_at=time_text(now - timedelta(minutes=2)),
        expires_at=time_text(now + timedelta(minutes=5)),
    )
    store.submit(create_ticket(died)).result()
    config = parse_config_text(CONFIG.replace("channel: ops, ", ""), source="test.yaml")
    service = ApprovalService(lambda: config, store)
    await service.start()  # sweeps at startup
    try:
        stored = await service.get(died.id)
        assert stored is not None
        assert stored.status == TicketStatus.ORPHANED
        await service.decide(died.id, Verdict("alice", "approve"))
        released = await service.hold(RULE, call())
        assert isinstance(released.decision, Allow)
        [facts] = released.approvals
        assert facts.chain is not None
        assert facts.chain["approval"]["retry"] is True
        assert facts.wait_ms == 0.0
        consumed = await service.get(died.id)
        assert consumed is not None
        assert consumed.status == TicketStatus.CONSUMED
    finally:
        await service.shutdown()


async def test_tickets_stored_with_secret_arguments_in_clear_are_redacted_when_the_service_starts(
    store: Store,
) -> None:
    """Tickets written by a version that kept arguments in clear are scrubbed on the next start."""
    arguments = {"amount": 10, "password": "hunter2-from-an-older-version"}
    made = ticket()
    old = ticket(
        request=replace(made.request, tool_input_json=canonical_json(arguments).decode()),
        arguments_digest=arguments_digest(arguments),
    )
    clean = ticket()
    await store.write(create_ticket(old))
    await store.write(create_ticket(clean))
    config = parse_config_text(CONFIG, source="test.yaml")
    started = ApprovalService(lambda: config, store, clock=lambda: NOW, poll_interval=0.05)
    await started.start()
    try:
        redacted, untouched = await started.get(old.id), await started.get(clean.id)
    finally:
        await started.shutdown()
    assert redacted is not None
    assert untouched is not None
    assert redacted.to_json()["tool_input"] == {"amount": 10, "password": "[REDACTED]"}
    assert redacted.arguments_digest == arguments_digest(arguments)  # still binds the original call
    assert untouched.request == clean.request
