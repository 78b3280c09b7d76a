"""The governed path of :class:`Gateway`: which snapshot a record names, and what only a held call pays.

A fake upstream and a stub enforcer stand in for the network and the gates, so each test looks
at one property of the core: the config hash a record carries across a hot reload, that a call
nothing can hold is settled inline (no task of its own), and that a held call can still be
cancelled by the agent or abandoned by a disconnecting client.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from helio_proxy.audit import Auditor
from helio_proxy.config import load_config_text
from helio_proxy.gateway import Gateway, Inbound
from helio_proxy.gateway.enforcement import GovernedCall, Settlement
from helio_proxy.gateway.exchange import (
    ClientDisconnected,
    JsonReply,
)
from helio_proxy.gateway.snapshot import Snapshot, Snapshots
from helio_proxy.jsonrpc import parse
from helio_proxy.policy import Allow, Decision, Deny, RequireApproval
from tests.unit.gateway.fakes import EchoUpstream, Sink

HEADERS = {"mcp-session-id": "s-1"}


def _config(rule_name: str, *, action: str = "allow", budgets: str = "") -> str:
    return (
        "version: '1'\n"
        "upstream:\n  url: 'http://127.0.0.1:9/mcp'\n"
        "dashboard:\n  enabled: true\n  api_secret: test-secret-0123456789abcdef\n"
        f"policies:\n  default: deny\n  rules:\n    - name: {rule_name}\n"
        f"      match: {{tool: echo}}\n      action: {action}\n" + budgets
    )


def _snapshot(text: str, tmp_path: Path) -> Snapshot:
    return Snapshot.of(load_config_text(text, path=tmp_path / "helio.yaml"))


class StubEnforcer:
    """Allows every call; notes the task each settle ran in; can hold settles until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.release.set()
        self.entered = asyncio.Event()
        self.tasks: list[asyncio.Task[Any] | None] = []

    async def settle(self, decision: Decision, call: GovernedCall) -> Settlement:
        self.tasks.append(asyncio.current_task())
        self.entered.set()
        await self.release.wait()
        if isinstance(decision, RequireApproval):
            return Settlement(
                Allow(rule=decision.rule, rule_index=decision.rule_index, reason=decision.reason)
            )
        assert isinstance(decision, Allow | Deny)
        return Settlement(decision)

    def peek(self, decision: Decision, call: GovernedCall) -> Settlement:
        raise AssertionError("not a dry run")

    def settled(self, decision: Decision) -> Settlement | None:
        return None  # every call goes through settle()


def _gateway(snapshots: Snapshots, sink: Sink, enforcer: StubEnforcer) -> Gateway:
    return Gateway(EchoUpstream(), snapshots, auditor=Auditor(sink), enforcer=enforcer)


def _call(request_id: int, **inbound: Any) -> Inbound:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {}},
    }
    return Inbound(message=parse(json.dumps(body).encode()), headers=HEADERS, **inbound)


def _cancel(request_id: int) -> Inbound:
    body: dict[str, Any] = {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": request_id},
    }
    return Inbound(message=parse(json.dumps(body).encode()), headers=HEADERS)


async def test_a_call_in_flight_over_a_reload_records_the_hash_of_the_config_that_governed_it(
    tmp_path: Path,
) -> None:
    first, second = _snapshot(_config("before"), tmp_path), _snapshot(_config("after"), tmp_path)
    assert first.sha256 != second.sha256
    snapshots, sink, enforcer = Snapshots(first), Sink(), StubEnforcer()
    gateway = _gateway(snapshots, sink, enforcer)
    enforcer.release.clear()
    in_flight = asyncio.create_task(gateway.handle(_call(1)))
    await enforcer.entered.wait()
    snapshots.swap(second)  # a hot reload while the call is being settled
    enforcer.release.set()
    reply = await in_flight
    assert isinstance(reply, JsonReply)
    assert reply.status == 200
    await gateway.handle(_call(2))
    assert [(r.matched_rule, r.config_sha256) for r in sink.records] == [
        ("before", first.sha256),
        ("after", second.sha256),
    ]


async def test_a_call_nothing_can_hold_is_settled_in_the_callers_task(tmp_path: Path) -> None:
    snapshot = _snapshot(_config("plain"), tmp_path)
    assert snapshot.budgets_hold is False
    enforcer = StubEnforcer()
    gateway = _gateway(Snapshots(snapshot), Sink(), enforcer)
    await gateway.handle(_call(1))
    assert enforcer.tasks == [asyncio.current_task()]


async def test_a_budget_that_asks_operators_makes_every_call_holdable(tmp_path: Path) -> None:
    budget = (
        "budgets:\n  - name: spend\n    limit: 100\n    window: 24h\n    on_exceed: require_approval\n"
        "    contributors:\n      - match: {tool: echo}\n        field: '$.amount'\n"
    )
    snapshot = _snapshot(_config("plain", budgets=budget), tmp_path)
    assert snapshot.budgets_hold is True
    enforcer = StubEnforcer()
    gateway = _gateway(Snapshots(snapshot), Sink(), enforcer)
    await gateway.handle(_call(1))
    assert enforcer.tasks[0] is not asyncio.current_task()


async def test_a_held_call_cancelled_by_the_agent_is_answered_and_recorded(tmp_path: Path) -> None:
    snapshot = _snapshot(_config("ask", action="require_approval"), tmp_path)
    sink, enforcer = Sink(), StubEnforcer()
    gateway = _gateway(Snapshots(snapshot), sink, enforcer)
    enforcer.release.clear()
    held = asyncio.create_task(gateway.handle(_call(7)))
    await enforcer.entered.wait()
    await gateway.handle(_cancel(7))
    reply = await asyncio.wait_for(held, 5)
    assert isinstance(reply, JsonReply)
    assert reply.payload["error"]["data"]["reason"] == "request_cancelled"
    [record] = sink.records
    assert record.block_reason == "request_cancelled"
    assert record.config_sha256 == snapshot.sha256


async def test_a_held_call_whose_client_disconnects_is_recorded_and_not_answered(tmp_path: Path) -> None:
    snapshot = _snapshot(_config("ask", action="require_approval"), tmp_path)
    sink, enforcer = Sink(), StubEnforcer()
    gateway = _gateway(Snapshots(snapshot), sink, enforcer)
    enforcer.release.clear()
    gone = asyncio.Event()

    async def disconnected() -> None:
        await gone.wait()

    held = asyncio.create_task(gateway.handle(_call(3, disconnected=disconnected)))
    await enforcer.entered.wait()
    gone.set()
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(held, 5)
    [record] = sink.records
    assert record.block_reason == "client_disconnected"
    assert record.policy_decision == "require_approval"
    assert enforcer.tasks[0] is not None
    assert enforcer.tasks[0].cancelled()


async def test_an_id_in_flight_in_a_session_the_proxy_minted_is_refused_until_answered(
    tmp_path: Path,
) -> None:
    snapshot = _snapshot(_config("plain"), tmp_path)
    sink, enforcer = Sink(), StubEnforcer()
    gateway = _gateway(Snapshots(snapshot), sink, enforcer)
    enforcer.release.clear()
    first = asyncio.create_task(gateway.handle(_call(1, transport_session_id="sse-1")))
    await enforcer.entered.wait()
    again = await gateway.handle(_call(1, transport_session_id="sse-1"))
    other_session = asyncio.create_task(gateway.handle(_call(1, transport_session_id="sse-2")))
    enforcer.release.set()
    answered, other = await first, await other_session
    reused = await gateway.handle(_call(1, transport_session_id="sse-1"))
    assert isinstance(again, JsonReply)
    assert again.status == 400
    assert again.payload["error"]["data"]["reason"] == "duplicate_request_id"
    assert [reply.status for reply in (answered, other, reused)] == [200, 200, 200]
    refused = [r for r in sink.records if r.block_reason == "duplicate_request_id"]
    assert [(r.policy_decision, r.tool_name) for r in refused] == [("rejected", "echo")]


async def test_an_upstream_minted_session_id_is_not_taken_for_one_client(tmp_path: Path) -> None:
    """Over streamable HTTP the session id is the upstream's (it may give every client the same
    one): two clients' requests with the same id are both forwarded."""
    snapshot = _snapshot(_config("plain"), tmp_path)
    enforcer = StubEnforcer()
    gateway = _gateway(Snapshots(snapshot), Sink(), enforcer)
    enforcer.release.clear()
    first = asyncio.create_task(gateway.handle(_call(1)))
    await enforcer.entered.wait()
    second = asyncio.create_task(gateway.handle(_call(1)))
    await asyncio.sleep(0)
    enforcer.release.set()
    assert [(await first).status, (await second).status] == [200, 200]
