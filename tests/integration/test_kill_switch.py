"""The kill switch in one real proxy: the operator API engages and releases it, calls in an open
session and calls held for approval get ``kill_switch``, each change is an audit record, an
upstream scope stops only that upstream, an unreadable state blocks everything, and ``helio kill``
/ ``helio resume`` write the same state from the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from mcp import Client, MCPError

from helio_proxy.cli import cli
from helio_proxy.killswitch import GLOBAL
from tests.harness import audit_records, mcp_upstream, run_proxy
from tests.integration.approval_support import (
    ROOT,
    SECRET,
    VIEWER,
    approval_config,
    bearer,
    held_ticket,
    raw_call,
    ticket_status,
)


async def _switch(app: Any, body: dict[str, Any], secret: str = ROOT) -> httpx.Response:
    async with httpx.AsyncClient(base_url=app.dashboard_url) as http:
        return await http.post("/api/kill-switch", json=body, headers=bearer(secret))


async def test_the_api_kills_open_sessions_and_held_calls_and_resume_serves_again(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with (
        mcp_upstream() as upstream,
        run_proxy(approval_config(upstream, audit_path=str(db))) as app,
        Client(app.mcp_url, mode="legacy") as client,
    ):
        assert (await client.call_tool("get_weather", {"city": "Oslo"})).is_error is False
        held = asyncio.create_task(raw_call(app.mcp_url, "create_payment", {"amount": 5}))
        ticket = await held_ticket(app)

        # A viewer sees the state but cannot change it; the admin can.
        async with httpx.AsyncClient(base_url=app.dashboard_url) as http:
            state = await http.get("/api/kill-switch", headers=bearer(VIEWER))
        assert state.status_code == 200
        assert state.json()["data"] == {"engaged": False, "unreadable": None, "scopes": []}
        assert (await _switch(app, {"engaged": True}, VIEWER)).status_code == 403

        engaged = await _switch(app, {"engaged": True, "reason": "incident 42"})
        assert engaged.status_code == 200
        body = engaged.json()["data"]
        assert body["changed"] is True
        assert body["scope"] == GLOBAL
        assert [s["scope"] for s in body["scopes"]] == [GLOBAL]
        assert body["scopes"][0]["actor"] == "root"

        async with asyncio.timeout(5):
            answer = await held
        assert answer["error"]["code"] == -32001
        assert answer["error"]["data"]["reason"] == "kill_switch"
        assert answer["error"]["data"]["retry_allowed"] is False
        await ticket_status(app, ticket["id"], "client_disconnected")

        with pytest.raises(MCPError) as blocked:
            await client.call_tool("get_weather", {"city": "Oslo"})
        assert blocked.value.code == -32001
        data = blocked.value.data
        assert data["reason"] == "kill_switch"
        assert data["blocked"] is True
        assert data["kill_switch_scope"] == GLOBAL
        assert data["kill_switch_reason"] == "incident 42"
        assert data["engaged_by"] == "root"

        again = await _switch(app, {"engaged": True, "reason": "twice"})
        assert again.json()["data"]["changed"] is False

        released = await _switch(app, {"engaged": False, "reason": "fixed"})
        assert released.json()["data"]["engaged"] is False
        assert (await client.call_tool("get_weather", {"city": "Oslo"})).is_error is False

        metrics = app.metrics
        assert metrics is not None

    switches = audit_records(db, record_kind="kill_switch")
    assert [
        (r["metadata"]["engaged"], r["metadata"]["actor"], r["metadata"]["reason"]) for r in switches
    ] == [
        (True, "root", "incident 42"),
        (False, "root", "fixed"),
    ]
    assert all(r["metadata"]["source"] == "api" and r["metadata"]["scope"] == GLOBAL for r in switches)
    calls = audit_records(db, record_kind="tool_call")
    reasons = [(r["tool_name"], r["block_reason"]) for r in calls]
    assert ("create_payment", "kill_switch") in reasons
    assert ("get_weather", "kill_switch") in reasons
    assert reasons[-1] == ("get_weather", None)


async def test_an_upstream_scope_stops_only_that_upstream(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with mcp_upstream(stateless=True) as first, mcp_upstream(stateless=True) as second:
        config = approval_config(first, audit_path=str(db)).replace(
            f"upstream:\n  url: '{first}'\n  request_timeout: 5s\n",
            f"upstreams:\n  - name: pay\n    url: '{first}'\n  - name: docs\n    url: '{second}'\n",
        )
        async with run_proxy(config) as app:
            unknown = await _switch(app, {"engaged": True, "upstream": "nope"})
            assert unknown.status_code == 400
            both = await _switch(app, {"engaged": True, "upstream": "pay", "agent": "a"})
            assert both.status_code == 400
            assert (await _switch(app, {"engaged": True, "upstream": "pay"})).status_code == 200
            pay = app.base_url + app.mount("pay").path("/mcp")
            docs = app.base_url + app.mount("docs").path("/mcp")
            killed = await raw_call(pay, "get_weather", {"city": "Oslo"})
            served = await raw_call(docs, "get_weather", {"city": "Oslo"})
            assert killed["error"]["data"]["reason"] == "kill_switch"
            assert killed["error"]["data"]["kill_switch_scope"] == "upstream:pay"
            assert "result" in served
            scrape = app.metrics.registry
            values = {
                tuple(sorted(s.labels.items())): s.value
                for family in scrape.collect()
                if family.name == "helio_kill_switch_engaged"
                for s in family.samples
            }
            assert values == {(("scope", "global"),): 0.0, (("scope", "upstream:pay"),): 1.0}


async def test_an_unreadable_state_blocks_every_call(tmp_path: Path) -> None:
    async with mcp_upstream(stateless=True) as upstream, run_proxy(approval_config(upstream)) as app:
        assert "result" in await raw_call(app.mcp_url, "get_weather", {"city": "Oslo"})

        async def broken(_job: Any) -> Any:
            raise RuntimeError("database is locked")

        store = app.kill_switch.store
        app.kill_switch.store = type("Broken", (), {"read": staticmethod(broken)})()  # pyright: ignore[reportAttributeAccessIssue]
        await app.kill_switch.refresh()
        answer = await raw_call(app.mcp_url, "get_weather", {"city": "Oslo"})
        assert answer["error"]["data"]["reason"] == "kill_switch"
        assert "cannot be read" in answer["error"]["data"]["kill_switch_reason"]
        async with httpx.AsyncClient(base_url=app.dashboard_url) as http:
            state = (await http.get("/api/kill-switch", headers=bearer(SECRET))).json()["data"]
        assert state["engaged"] is True
        assert state["unreadable"] == "database is locked"

        # It is read again every second: once the store answers, calls are served again.
        app.kill_switch.store = store
        async with asyncio.timeout(3):
            while app.kill_switch.state.any_engaged:  # noqa: ASYNC110 - the retry task updates it, bounded
                await asyncio.sleep(0.05)
        assert "result" in await raw_call(app.mcp_url, "get_weather", {"city": "Oslo"})


async def test_helio_kill_and_resume_write_the_store_and_a_running_proxy_follows(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with mcp_upstream(stateless=True) as upstream:
        text = approval_config(upstream, audit_path=str(db))
        path = tmp_path / "helio.yaml"
        path.write_text(text)
        runner = CliRunner()
        # Before any proxy ran: the store is created and the switch holds from the first start.
        killed = runner.invoke(cli, ["kill", "-c", str(path), "--reason", "freeze", "--by", "ops"])
        assert killed.exit_code == 0, killed.output
        assert "Kill switch ENGAGED (global) by ops: freeze" in killed.output
        assert runner.invoke(cli, ["kill", "-c", str(path), "--upstream", "x"]).exit_code == 2
        async with run_proxy(text) as app:
            answer = await raw_call(app.mcp_url, "get_weather", {"city": "Oslo"})
            assert answer["error"]["data"]["reason"] == "kill_switch"
            assert answer["error"]["data"]["engaged_by"] == "ops"
            resumed = await asyncio.to_thread(runner.invoke, cli, ["resume", "-c", str(path), "--by", "ops"])
            assert resumed.exit_code == 0, resumed.output
            assert "Kill switch released (global) by ops" in resumed.output
            async with asyncio.timeout(2):
                while app.kill_switch.state.any_engaged:  # noqa: ASYNC110 - the change bus updates it, bounded
                    await asyncio.sleep(0.01)
            assert "result" in await raw_call(app.mcp_url, "get_weather", {"city": "Oslo"})
        again = runner.invoke(cli, ["resume", "-c", str(path)])
        assert "was already not engaged" in again.output
    switches = audit_records(db, record_kind="kill_switch")
    assert [(r["metadata"]["engaged"], r["metadata"]["source"]) for r in switches] == [
        (True, "cli"),
        (False, "cli"),
    ]


async def test_an_approval_given_on_one_proxy_wakes_the_call_held_on_another_through_the_change_bus(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    async with mcp_upstream(stateless=True) as upstream:
        config = approval_config(upstream, audit_path=str(db))
        async with run_proxy(config) as first, run_proxy(config) as second:
            # The holder's own ticket poll (the heal fallback) is taken out of the way: only the
            # change bus can wake the held call within the second below.
            second.approvals.poll_interval = 3600
            await asyncio.sleep(0.6)  # the poll's current sleep (0.5 s) ends; the next is an hour
            held = asyncio.create_task(raw_call(second.mcp_url, "create_payment", {"amount": 5}))
            ticket = await held_ticket(second)
            async with httpx.AsyncClient(base_url=first.dashboard_url) as http:
                approved = await http.post(
                    f"/api/approvals/{ticket['id']}/approve", json={}, headers=bearer(ROOT)
                )
            assert approved.status_code == 200
            async with asyncio.timeout(1):
                answer = await held
            assert "result" in answer
            assert second.changes.delivered >= 1
