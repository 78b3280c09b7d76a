"""A limit gate on a real store (SQLite file or a fresh PostgreSQL schema) with a hand-moved clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from helio_proxy.audit.clock import ManualClock
from helio_proxy.config import HelioConfig, parse_config_text
from helio_proxy.gateway.enforcement import GovernanceEnforcer
from helio_proxy.governance import ApprovalGate, GovernedCall, Settlement
from helio_proxy.limits import LimitsGate
from helio_proxy.policy import Allow, CompiledPolicy, Decision, DryRun, RequireApproval, compile_policy
from helio_proxy.policy.facts import CallFacts
from helio_proxy.session.identity import UNRESOLVED, SessionIdentity
from helio_proxy.store import Store

BASE = (
    "version: '1'\nupstream: {url: 'http://127.0.0.1:9/mcp'}\ndashboard: {api_secret: '" + "s" * 32 + "'}\n"
)
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Rig:
    """The gate under test, the config it reads (swap it to "reload"), and what it published."""

    def __init__(self, store: Store, clock: ManualClock, text: str, *, grants: bool = True) -> None:
        self.store = store
        self.clock = clock
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.approvals: ApprovalGate | None = None
        self.load(text)
        self.gate = LimitsGate(
            store,
            lambda: self.config,
            clock=clock.now,
            publish=lambda kind, data: self.events.append((kind, data)),
            grants=grants,
        )

    def load(self, text: str) -> None:
        self.config: HelioConfig = parse_config_text(BASE + text, env={})
        self.policy: CompiledPolicy = compile_policy(self.config)

    def call(
        self,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        session: str | None = "s1",
        raw: bytes | None = None,
    ) -> GovernedCall:
        arguments = arguments if arguments is not None else {}
        if raw is None:
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments},
            }
            raw = json.dumps(body).encode()
        return GovernedCall(
            facts=CallFacts(tool, arguments, session_id=session),
            identity=SessionIdentity(session, "header") if session is not None else UNRESOLVED,
            request_id=1,
            raw=raw,
        )

    def decide(self, call: GovernedCall) -> Decision:
        decision = self.policy.decide(call.facts)
        if isinstance(decision, DryRun):
            return decision.would
        return decision

    async def reserve(self, call: GovernedCall, *, deliver: bool = True) -> Settlement:
        """Reserve like the enforcer does; a delivered call is committed at once."""
        decision = self.decide(call)
        assert not isinstance(decision, RequireApproval)
        if decision.blocks:
            raise AssertionError(f"the policy itself blocked {call.facts.tool}: {decision}")
        # Through the enforcer, which owns the order (a budget's approval hold, then reserving again).
        settlement = await GovernanceEnforcer(self.approvals, self.gate).settle(decision, call)
        if deliver and isinstance(settlement.decision, Allow):
            await settlement.delivered()
        return settlement

    async def run(self, tool: str, arguments: dict[str, Any] | None = None, **kw: Any) -> Settlement:
        return await self.reserve(self.call(tool, arguments, **kw))

    def published(self, kind: str) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == kind]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


class RigFactory:
    def __init__(self, store: Store, clock: ManualClock) -> None:
        self.store = store
        self.clock = clock

    async def __call__(self, text: str, *, grants: bool = True) -> Rig:
        rig = Rig(self.store, self.clock, text, grants=grants)
        await rig.gate.reconciled(rig.config)
        return rig


@pytest.fixture
def rig(store: Store, clock: ManualClock) -> RigFactory:
    return RigFactory(store, clock)
