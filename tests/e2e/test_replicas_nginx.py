"""Three ``helio start`` replicas on one PostgreSQL behind nginx behave as one proxy.

The layout of docs/deployment.md, run for real: the replicas run examples/deployment/helio.yaml,
nginx runs examples/deployment/nginx.conf (round-robin for the MCP POSTs, the operator API and
the sideband) with loopback ports rendered in. Agents are the official ``mcp`` client and the
``helio`` SDK, and they reach the replicas only through nginx; nginx names the replica that
answered each request in ``X-Helio-Replica``, which is how the tests know where a call ran.

One set of replicas serves the whole module (a module fixture); the last test stops them and
checks the trail they wrote together. The tests run in file order and build on one ledger of the
calls the agents made.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from sqlalchemy import text

from helio import HelioContext
from helio_proxy.baselines.table import insert_first_seen
from helio_proxy.policy.baselines import ToolBaseline
from helio_proxy.store import create_store
from helio_proxy.store.testing import postgres_schema
from tests.e2e.conftest import demo_upstream, free_port
from tests.e2e.replicas import API_SECRET, CONFIG, NAMES, SDK_TOKEN, Cluster, three_replicas, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

Outcome = tuple[str, str]
"""``("ok", "")``, ``("blocked", reason)`` or ``("tool_error", "")``."""

OLD_WEATHER = {
    "name": "get_weather",
    "description": "An older get_weather the operators baselined before the server changed it.",
    "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def ledger() -> Counter[str]:
    """Every ``tools/call`` the agents sent, by tool (the trail must hold each once)."""
    return Counter()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("replicas")
    upstream_port = free_port()
    with postgres_schema() as url, demo_upstream(upstream_port, directory / "upstream.log"):
        _baseline_an_older_weather_tool(url)
        with three_replicas(directory, url, f"http://127.0.0.1:{upstream_port}/mcp") as running:
            yield running


def _baseline_an_older_weather_tool(url: str) -> None:
    """The store remembers another get_weather than the server lists: every replica sees drift."""
    store = create_store(url)
    store.open_sync()
    try:
        store.submit(insert_first_seen("", ToolBaseline.of(OLD_WEATHER), datetime.now(UTC))).result(10)
    finally:
        store.close_sync()


class Agent:
    """The official MCP client inside a ``HelioContext``, through nginx only.

    ``served`` lists ``(tool, replica)`` for every ``tools/call`` answer, in the order they came.
    """

    def __init__(self, cluster: Cluster, ledger: Counter[str]) -> None:
        self.cluster = cluster
        self.ledger = ledger
        self.served: list[tuple[str, str]] = []
        self.ctx: HelioContext
        self.mcp: Client

    async def _seen(self, response: httpx2.Response) -> None:
        request = response.request
        if request.method != "POST":
            return
        try:
            message = json.loads(request.content)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("method") == "tools/call":
            tool = str(message["params"]["name"])
            self.served.append((tool, self.cluster.replica_at(response.headers["x-helio-replica"])))
            self.ledger[tool] += 1

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Agent]:
        async with (
            HelioContext(self.cluster.sideband_url, token=SDK_TOKEN) as ctx,
            httpx2.AsyncClient(
                headers=ctx.headers, timeout=60, event_hooks={"response": [self._seen]}
            ) as http,
            Client(streamable_http_client(self.cluster.mcp_url, http_client=http)) as mcp,
        ):
            self.ctx, self.mcp = ctx, mcp
            yield self

    async def call(self, tool: str, arguments: dict[str, Any]) -> Outcome:
        try:
            result = await self.mcp.call_tool(tool, arguments)
        except MCPError as error:
            if error.code != -32001:
                raise
            return ("blocked", str(error.error.data["reason"]))
        return ("tool_error", "") if result.is_error else ("ok", "")

    async def served_call(self, tool: str, arguments: dict[str, Any]) -> tuple[str, Outcome]:
        """One call and the replica that served it."""
        outcome = await self.call(tool, arguments)
        served_tool, replica = self.served[-1]
        assert served_tool == tool
        return replica, outcome


async def until_every_replica(
    attempt: Callable[[], Awaitable[tuple[str, Outcome]]],
    done: Callable[[Outcome], bool],
    *,
    within: float,
) -> tuple[dict[str, float], list[tuple[str, Outcome]]]:
    """Repeat ``attempt`` (one call through nginx: the replica that served it, its outcome) until
    each of the three replicas has served an outcome ``done`` accepts.

    Returns the seconds from the start until each replica first did, and every attempt made.
    Fails after ``within`` seconds with what the replicas answered meanwhile. A change's propagation is
    this with the change made just before (a drift acceptance, the kill switch).
    """
    start = time.monotonic()
    first: dict[str, float] = {}
    attempts: list[tuple[str, Outcome]] = []
    while len(first) < len(NAMES):
        if time.monotonic() - start > within:
            raise AssertionError(f"not every replica got there within {within}s: {first} after {attempts}")
        replica, outcome = await attempt()
        attempts.append((replica, outcome))
        if done(outcome):
            first.setdefault(replica, time.monotonic() - start)
    return first, attempts


def ok(outcome: Outcome) -> bool:
    return outcome == ("ok", "")


async def test_evidence_marked_through_one_replicas_sideband_unlocks_the_call_on_the_others(
    cluster: Cluster, ledger: Counter[str]
) -> None:
    async with Agent(cluster, ledger).session() as agent:
        before = await agent.served_call("refund_order", {"order_id": "A-1001"})
        await agent.ctx.amark_evidence("lookup_order", "order_checked", {"order_id": "A-1001"})
        marks = _access(cluster, "sideband", "POST /evidence")
        first, attempts = await until_every_replica(
            lambda: agent.served_call("refund_order", {"order_id": "A-1001"}), ok, within=20
        )
    assert before[1] == ("blocked", "evidence_missing")
    [marked_on] = marks
    assert all(ok(outcome) for _, outcome in attempts), attempts  # no replica ever missed it
    assert set(first) == set(NAMES)
    assert {replica for replica, _ in attempts} - {marked_on}, "served only where it was marked"


async def test_a_prerequisite_that_ran_on_one_replica_unlocks_the_dependent_call_on_the_others(
    cluster: Cluster, ledger: Counter[str]
) -> None:
    async with Agent(cluster, ledger).session() as agent:
        before = await agent.served_call("send_email", {"to": "a@example.com", "body": "hi"})
        ran_on, lookup = await agent.served_call("lookup_order", {"order_id": "A-1001"})
        first, attempts = await until_every_replica(
            lambda: agent.served_call("send_email", {"to": "a@example.com", "body": "hi"}), ok, within=20
        )
    assert before[1] == ("blocked", "dependency_missing")
    assert ok(lookup)
    assert all(ok(outcome) for _, outcome in attempts), attempts
    assert set(first) == set(NAMES)
    assert {replica for replica, _ in attempts} - {ran_on}


async def test_200_concurrent_payments_of_100_admit_exactly_50_across_the_three(
    cluster: Cluster, ledger: Counter[str]
) -> None:
    async with Agent(cluster, ledger).session() as agent, asyncio.timeout(90):
        outcomes = await asyncio.gather(*(agent.call("create_payment", {"amount": 100}) for _ in range(200)))
        served = Counter(replica for tool, replica in agent.served if tool == "create_payment")
    charged = _read(cluster, "SELECT amount FROM limit_events")
    assert Counter(outcomes) == {("ok", ""): 50, ("blocked", "spend_limited"): 150}
    assert set(served) == set(NAMES), served
    assert all(n >= 30 for n in served.values()), served
    assert sum(Decimal(str(a)) for a in charged) == Decimal(5000)


async def test_an_approval_held_on_one_replica_is_approved_through_another_and_the_call_completes(
    cluster: Cluster, ledger: Counter[str]
) -> None:
    operator = httpx.AsyncClient(
        base_url=cluster.operator_url, headers={"authorization": f"Bearer {API_SECRET}"}, timeout=20
    )
    async with operator, Agent(cluster, ledger).session() as agent:
        held = asyncio.create_task(agent.served_call("delete_user", {"user_id": "u-42"}))
        [ticket] = await _pending(operator)
        holder = _holder_of(cluster, ticket["id"])
        # Round-robin: the next operator request goes to the replica after the one that answered
        # this one. Ask until that is not the holder, then approve.
        order = list(NAMES)
        while True:
            seen = await operator.get(f"/api/approvals/{ticket['id']}")
            assert seen.status_code == 200, seen.text
            answered = cluster.replica_at(seen.headers["x-helio-replica"])
            if order[(order.index(answered) + 1) % len(order)] != holder:
                break
        assert not held.done()
        approved = await operator.post(f"/api/approvals/{ticket['id']}/approve", json={"comment": "ok"})
        async with asyncio.timeout(20):
            served_on, outcome = await held
    assert approved.status_code == 200, approved.text
    approved_on = cluster.replica_at(approved.headers["x-helio-replica"])
    assert approved_on != holder
    assert served_on == holder
    assert outcome == ("ok", "")


async def test_a_drift_acceptance_through_one_replica_is_seen_by_every_replica(
    cluster: Cluster, ledger: Counter[str]
) -> None:
    operator = httpx.AsyncClient(
        base_url=cluster.operator_url, headers={"authorization": f"Bearer {API_SECRET}"}, timeout=20
    )
    async with operator, Agent(cluster, ledger).session() as agent:

        def weather() -> Awaitable[tuple[str, Outcome]]:
            return agent.served_call("get_weather", {"city": "London"})

        _, drifted = await until_every_replica(
            weather, lambda o: o == ("blocked", "tool_definition_drift"), within=20
        )
        accepted = await operator.post("/api/tools/get_weather/accept", json={})
        seen_by, attempts = await until_every_replica(weather, ok, within=10)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["data"]["accepted_by"] == "api_secret"
    assert {o for _, o in drifted} == {("blocked", "tool_definition_drift")}
    accepted_on = cluster.replica_at(accepted.headers["x-helio-replica"])
    # The replica that took the acceptance applies it before answering; the others hear it on
    # the change bus (the 2 s baseline poll is only the fallback).
    assert max(seen_by.values()) < 4.0, seen_by
    print(f"drift acceptance through {accepted_on}: seen by each replica after {seen_by}")
    assert {o for _, o in attempts} <= {("ok", ""), ("blocked", "tool_definition_drift")}


async def test_a_kill_through_one_replica_blocks_calls_on_all_three_within_one_second(
    cluster: Cluster, ledger: Counter[str]
) -> None:
    operator = httpx.AsyncClient(
        base_url=cluster.operator_url, headers={"authorization": f"Bearer {API_SECRET}"}, timeout=20
    )
    async with operator, Agent(cluster, ledger).session() as agent:

        def search() -> Awaitable[tuple[str, Outcome]]:
            return agent.served_call("search_docs", {"query": "refund"})

        await until_every_replica(search, ok, within=20)
        killed = await operator.post("/api/kill-switch", json={"engaged": True, "reason": "drill"})
        stopped_by, _ = await until_every_replica(search, lambda o: o == ("blocked", "kill_switch"), within=5)
        resumed = await operator.post("/api/kill-switch", json={"engaged": False, "reason": "drill over"})
        served_by, _ = await until_every_replica(search, ok, within=5)
    assert killed.status_code == 200, killed.text
    assert resumed.status_code == 200, resumed.text
    killed_on = cluster.replica_at(killed.headers["x-helio-replica"])
    # The replica that took the change rereads it before answering; the others hear it on the
    # change bus (PostgreSQL LISTEN/NOTIFY).
    print(f"kill through {killed_on}: blocked on each replica after {stopped_by}; resumed after {served_by}")
    assert max(stopped_by.values()) < 1.0, stopped_by
    assert max(served_by.values()) < 1.0, served_by


async def test_a_legacy_sse_agent_is_pinned_to_one_replica_where_its_session_lives(
    cluster: Cluster, ledger: Counter[str]
) -> None:
    sessions: list[str] = []
    async with Client(
        sse_client(cluster.sse_url, on_session_created=sessions.append), mode="legacy"
    ) as client:
        results = [await client.call_tool("search_docs", {"query": "refund"}) for _ in range(4)]
        ledger["search_docs"] += len(results)
        [session] = sessions
        posts = _access(cluster, "mcp", f"POST /messages?sessionId={session}", count=6)
        # Why nginx pins them: the session lives in one replica's memory.
        [elsewhere] = [r for r in cluster.replicas if r.name != posts[0]][:1]
        async with httpx.AsyncClient(timeout=10) as http:
            stray = await http.post(
                f"http://127.0.0.1:{elsewhere.ports['mcp']}/messages",
                params={"sessionId": session},
                json={"jsonrpc": "2.0", "id": 99, "method": "ping"},
            )
    [stream] = _access(cluster, "mcp", "GET /sse")  # nginx logs the stream once it has ended
    assert all(not r.is_error for r in results)
    assert set(posts) == {stream}  # initialize, initialized and four calls: all on one replica
    assert stray.status_code == 404


def test_the_trail_the_three_wrote_verifies_and_the_export_holds_every_call_once(
    cluster: Cluster, ledger: Counter[str]
) -> None:
    codes = cluster.stop_replicas()
    assert codes == dict.fromkeys(NAMES, 0), cluster.replica_logs()
    env = {**os.environ, **cluster.env}
    verify, exported = _helio_together(
        [["audit", "verify", "-c", str(CONFIG)], ["export", "-c", str(CONFIG), "--format", "json"]], env
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert re.search(r"\b\d+ records?\b", verify.stdout), verify.stdout
    records = json.loads(exported.stdout)
    calls = [r for r in records if r["record_kind"] == "tool_call"]
    assert len({r["id"] for r in records}) == len(records)
    assert sorted(r["seq"] for r in records) == [
        int(r["seq"]) for r in sorted(records, key=lambda r: r["seq"])
    ]
    assert Counter(r["tool_name"] for r in calls) == ledger


async def _pending(operator: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The pending tickets, once there are any (bounded)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = await operator.get("/api/approvals", params={"status": "pending"})
        if pending := listed.json()["data"]:
            return pending
        await asyncio.sleep(0.05)
    raise AssertionError("no ticket became pending")


def _helio_together(commands: list[list[str]], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """``helio`` commands run side by side (each pays the interpreter's start-up); their results."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "helio_proxy", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    done: list[subprocess.CompletedProcess[str]] = []
    for args, process in zip(commands, processes, strict=True):
        out, err = process.communicate(timeout=90)
        done.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return done


def _access(cluster: Cluster, site: str, request: str, count: int = 1) -> list[str]:
    """The replicas that served the ``request`` lines of a site's nginx access log (once there
    are ``count`` of them: nginx logs a request when it ends)."""
    lines: list[str] = []

    def logged() -> bool:
        lines[:] = [line for line in cluster.access_log(site) if f'"{request} ' in line]
        return len(lines) >= count

    wait_until(logged)
    return [cluster.replica_at(re.search(r"upstream=(\S+)", line)[1]) for line in lines]  # type: ignore[index]


def _holder_of(cluster: Cluster, ticket_id: str) -> str:
    """The replica whose log says it holds the ticket's call."""
    holders: list[str] = []

    def found() -> bool:
        holders[:] = [
            name
            for name, log in cluster.replica_logs().items()
            if f"approval ticket {ticket_id}: delete_user waits for" in log
        ]
        return bool(holders)

    wait_until(found)
    [holder] = holders
    return holder


def _read(cluster: Cluster, query: str) -> list[Any]:
    store = create_store(cluster.store_url)
    store.open_sync()
    try:
        return list(store.read_sync(lambda c: c.execute(text(query)).scalars().all()))
    finally:
        store.close_sync()
