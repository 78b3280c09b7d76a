"""Approval workflows end to end in one process: the official MCP client calls a tool that needs
approval, the call is held, operators decide over the REST API on the dashboard port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from mcp import Client, MCPError

from helio_proxy.approvals import arguments_digest
from helio_proxy.config.digest import config_digest
from tests.harness import mcp_upstream, run_proxy
from tests.integration.approval_support import (
    ALICE,
    BOB,
    HEADERS,
    PAYMENTS,
    ROOT,
    SECRET,
    VIEWER,
    approval_config,
    bearer,
    decide,
    held_ticket,
    raw_call,
    records,
    ticket_status,
    wait_until,
)

PAYMENT = {"amount": 120.5, "currency": "EUR", "recipient": "acme"}


async def test_an_approved_call_returns_the_upstreams_result_and_the_record_names_the_operator(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    async with (
        mcp_upstream() as upstream,
        run_proxy(approval_config(upstream, audit_path=str(db))) as app,
        Client(app.mcp_url, mode="legacy") as client,
    ):
        call = asyncio.create_task(client.call_tool("create_payment", PAYMENT))
        ticket = await held_ticket(app)
        assert not call.done()
        assert ticket["tool_name"] == "create_payment"
        assert ticket["tool_input"] == PAYMENT
        assert ticket["arguments_digest"] == arguments_digest(PAYMENT)
        assert ticket["matched_rule"] == "approve-payments"
        assert ticket["config_sha256"] == app.loaded.sha256 == config_digest(app.loaded.config)
        assert ticket["session_id"]

        approved = await decide(app, ticket["id"], "approve", ALICE, {"comment": "known vendor"})
        assert approved.status_code == 200
        async with asyncio.timeout(10):
            result = await call
        again = await decide(app, ticket["id"], "approve", BOB)
        listed = await app.approvals.get(ticket["id"])
    assert result.is_error is False
    assert result.structured_content == {
        "status": "created",
        "amount": "120.5",
        "currency": "EUR",
        "recipient": "acme",
    }
    assert again.status_code == 409
    assert listed is not None
    assert listed.status.value == "consumed"

    [record] = [r for r in records(db) if r["tool_name"] == "create_payment"]
    assert record["policy_decision"] == "require_approval"
    assert record["block_reason"] is None
    assert record["approval_status"] == "approved"
    assert record["approved_by"] == "alice"
    assert record["approval_wait_ms"] > 0
    assert record["success"] is True
    chain = record["evidence_chain"]["approval"]
    assert chain["ticket_id"] == ticket["id"]
    assert chain["approvers"] == ["alice"]
    assert chain["comments"] == [{"by": "alice", "text": "known vendor"}]
    [resolution] = records(db, "approval_resolution")
    assert resolution["metadata"]["approvers"] == ["alice"]


async def test_a_denied_call_is_blocked_with_the_operators_reason(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with (
        mcp_upstream() as upstream,
        run_proxy(approval_config(upstream, audit_path=str(db))) as app,
        Client(app.mcp_url, mode="legacy") as client,
    ):
        call = asyncio.create_task(client.call_tool("create_payment", PAYMENT))
        ticket = await held_ticket(app)
        denied = await decide(app, ticket["id"], "deny", BOB, {"reason": "not on the vendor list"})
        with pytest.raises(MCPError) as caught:
            async with asyncio.timeout(10):
                await call
        late = await decide(app, ticket["id"], "approve", ALICE)
    assert denied.status_code == 200
    assert denied.json()["data"]["status"] == "denied"
    assert caught.value.code == -32001
    data = caught.value.data
    assert data["reason"] == "approval_denied"
    assert data["action"] == "require_approval"
    assert data["denial_reason"] == "not on the vendor list"
    assert data["denied_by"] == "bob"
    assert data["ticket_id"] == ticket["id"]
    assert data["retry_allowed"] is False
    assert "not on the vendor list" in caught.value.message
    assert late.status_code == 409
    [record] = [r for r in records(db) if r["tool_name"] == "create_payment"]
    assert (record["block_reason"], record["approval_status"]) == ("approval_denied", "denied")
    assert record["upstream_response"] is None


async def test_an_undecided_call_times_out_and_default_on_timeout_allow_lets_it_through(
    tmp_path: Path,
) -> None:
    quick = PAYMENTS.replace("approval: {timeout: 1m}", "approval: {timeout: 1s}")
    async with mcp_upstream(stateless=True) as upstream:
        async with run_proxy(approval_config(upstream, quick)) as app:
            answer = await raw_call(app.mcp_url, "create_payment", PAYMENT)
            [ticket] = (await app.approvals.list("timeout", 10, 0))[0]
        data = answer["error"]["data"]
        assert (data["reason"], data["retry_allowed"], data["timeout_seconds"]) == (
            "approval_timeout",
            True,
            1,
        )
        assert data["ticket_id"] == ticket.id

        db = tmp_path / "allow.db"
        allow = quick + "approval:\n  default_on_timeout: allow\n"
        async with run_proxy(approval_config(upstream, allow, audit_path=str(db))) as app:
            allowed = await raw_call(app.mcp_url, "create_payment", PAYMENT)
    assert allowed["result"]["isError"] is False
    [record] = records(db)
    assert (record["approval_status"], record["approved_by"], record["block_reason"]) == (
        "timeout",
        None,
        None,
    )


async def test_quorum_two_needs_two_distinct_operators() -> None:
    quorum = PAYMENTS.replace("approval: {timeout: 1m}", "approval: {timeout: 1m, quorum: 2}")
    async with (
        mcp_upstream(stateless=True) as upstream,
        run_proxy(approval_config(upstream, quorum)) as app,
    ):
        call = asyncio.create_task(raw_call(app.mcp_url, "create_payment", PAYMENT))
        ticket = await held_ticket(app)
        assert ticket["quorum"] == 2

        first = await decide(app, ticket["id"], "approve", ALICE)
        assert first.status_code == 200
        assert first.json()["data"]["status"] == "pending"
        assert first.json()["data"]["approvers"] == ["alice"]
        twice = await decide(app, ticket["id"], "approve", ALICE)
        assert twice.status_code == 409
        assert "already approved" in twice.json()["error"]
        assert app.approvals.held == 1
        assert not call.done()

        second = await decide(app, ticket["id"], "approve", BOB)
        assert second.json()["data"]["status"] == "approved"
        async with asyncio.timeout(10):
            answer = await call
    assert answer["result"]["isError"] is False


async def test_break_glass_needs_an_admin_and_a_reason_and_skips_the_quorum(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    quorum = PAYMENTS.replace("approval: {timeout: 1m}", "approval: {timeout: 1m, quorum: 2}")
    async with (
        mcp_upstream(stateless=True) as upstream,
        run_proxy(approval_config(upstream, quorum, audit_path=str(db))) as app,
    ):
        call = asyncio.create_task(raw_call(app.mcp_url, "create_payment", PAYMENT))
        ticket = await held_ticket(app)
        by_approver = await decide(app, ticket["id"], "break-glass", ALICE, {"reason": "outage"})
        by_viewer = await decide(app, ticket["id"], "approve", VIEWER)
        no_reason = await decide(app, ticket["id"], "break-glass", ROOT, {"approved_by": "mallory"})
        released = await decide(
            app, ticket["id"], "break-glass", ROOT, {"reason": "payroll outage", "approved_by": "mallory"}
        )
        async with asyncio.timeout(10):
            answer = await call
    assert by_approver.status_code == 403
    assert by_viewer.status_code == 403
    assert no_reason.status_code == 400
    assert released.status_code == 200
    assert released.json()["data"]["status"] == "break_glass"
    assert released.json()["data"]["break_glass_reason"] == "payroll outage"
    assert answer["result"]["isError"] is False
    [record] = records(db)
    assert record["approval_status"] == "break_glass"
    assert record["approved_by"] == "root"
    assert record["evidence_chain"]["break_glass"] == {"reason": "payroll outage", "invoked_by": "root"}


async def test_the_rest_api_lists_and_validates(tmp_path: Path) -> None:
    async with (
        mcp_upstream(stateless=True) as upstream,
        run_proxy(approval_config(upstream)) as app,
    ):
        call = asyncio.create_task(raw_call(app.mcp_url, "create_payment", PAYMENT))
        ticket = await held_ticket(app)
        async with httpx.AsyncClient(base_url=app.dashboard_url, headers=bearer(VIEWER)) as http:
            one = await http.get(f"/api/approvals/{ticket['id']}")
            missing = await http.get("/api/approvals/nope")
            bad_status = await http.get("/api/approvals", params={"status": "maybe"})
            bad_limit = await http.get("/api/approvals", params={"limit": "0"})
            anonymous = await http.get("/api/approvals", headers={"authorization": ""})
        unknown = await decide(app, "nope", "approve", ALICE)
        await decide(app, ticket["id"], "deny", SECRET)
        async with asyncio.timeout(10):
            answer = await call
    assert one.json()["data"]["id"] == ticket["id"]
    assert missing.status_code == 404
    assert bad_status.status_code == 400
    assert bad_limit.status_code == 400
    assert anonymous.status_code == 401
    assert unknown.status_code == 404
    assert answer["error"]["data"]["denied_by"] == "api_secret"


async def test_the_mcp_and_sideband_ports_serve_no_approval_endpoints() -> None:
    """Separation of duties: the agent's own ports cannot reach the approval API."""
    async with (
        mcp_upstream() as upstream,
        run_proxy(approval_config(upstream, extra="sdk:\n  enabled: true\n  port: 0\n")) as app,
    ):
        mcp_base = app.mcp_url.removesuffix("/mcp")
        async with httpx.AsyncClient(headers=bearer(SECRET)) as http:
            on_mcp = await http.get(f"{mcp_base}/api/approvals")
            approve_on_mcp = await http.post(f"{mcp_base}/api/approvals/x/approve", json={})
            assert app.sdk_token is not None
            agent = bearer(app.sdk_token.value)  # what the agent holds for the sideband
            on_sdk = await http.get(f"{app.sideband_url}/api/approvals", headers=agent)
            approve_on_sdk = await http.post(
                f"{app.sideband_url}/api/approvals/x/approve", json={}, headers=agent
            )
            on_dashboard = await http.get(f"{app.dashboard_url}/api/approvals")
            slack_on_mcp = await http.post(f"{mcp_base}/slack/actions", content=b"payload=%7B%7D")
    assert on_mcp.status_code == 404
    assert approve_on_mcp.status_code == 404
    assert on_sdk.status_code == 404
    assert approve_on_sdk.status_code == 404
    assert on_dashboard.status_code == 200
    assert slack_on_mcp.status_code == 404  # no Slack channel configured


async def test_operator_events_announce_requests_and_resolutions() -> None:
    async with (
        mcp_upstream(stateless=True) as upstream,
        run_proxy(approval_config(upstream)) as app,
    ):
        seen: list[tuple[str, str]] = []

        async def listen() -> None:
            async for event in app.events.subscribe(60):
                seen.append((event.type, event.data["ticket"]["status"]))
                if event.type == "approval_resolved":
                    return

        listener = asyncio.create_task(listen())
        await wait_until(lambda: app.events.subscribers == 1)
        call = asyncio.create_task(raw_call(app.mcp_url, "create_payment", PAYMENT))
        ticket = await held_ticket(app)
        await decide(app, ticket["id"], "approve", ALICE)
        async with asyncio.timeout(10):
            await call
            await listener
    assert seen == [("approval_requested", "pending"), ("approval_resolved", "approved")]


async def test_a_client_that_disconnects_closes_its_ticket_and_is_recorded(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with (
        mcp_upstream(stateless=True) as upstream,
        run_proxy(approval_config(upstream, audit_path=str(db))) as app,
    ):
        call = asyncio.create_task(raw_call(app.mcp_url, "create_payment", PAYMENT))
        ticket = await held_ticket(app)
        call.cancel()  # the agent's HTTP connection closes
        with pytest.raises(asyncio.CancelledError):
            await call
        await wait_until(lambda: app.approvals.held == 0)
        await ticket_status(app, ticket["id"], "client_disconnected")
        late = await decide(app, ticket["id"], "approve", ALICE)
    assert late.status_code == 409
    [record] = records(db)
    assert (record["block_reason"], record["policy_decision"]) == ("client_disconnected", "require_approval")
    [resolution] = records(db, "approval_resolution")
    assert (resolution["metadata"]["status"], resolution["metadata"]["kind"]) == (
        "client_disconnected",
        "rule",
    )


async def test_unmatched_destructive_calls_are_held_under_flag_destructive_require_approval() -> None:
    policies = "policies:\n  default: allow\n  flag_destructive: require_approval\n"
    async with (
        mcp_upstream(stateless=True) as upstream,
        run_proxy(approval_config(upstream, policies)) as app,
    ):
        call = asyncio.create_task(raw_call(app.mcp_url, "delete_user", {"user_id": "u-1"}))
        ticket = await held_ticket(app)
        await decide(app, ticket["id"], "approve", ALICE)
        async with asyncio.timeout(10):
            answer = await call
        weather = await raw_call(app.mcp_url, "get_weather", {"city": "Leeds"})
    assert (ticket["tool_name"], ticket["reason"], ticket["matched_rule"]) == (
        "delete_user",
        "flag_destructive",
        None,
    )
    assert answer["result"]["content"][0]["text"] == "deleted user u-1"
    assert weather["result"]["isError"] is False  # read-only: never held


async def _initialized(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """Open an MCP session over plain HTTP; the headers its later requests carry."""
    opened = await http.post(
        url,
        json={
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        },
        headers=HEADERS,
    )
    assert opened.status_code == 200
    session = {
        **HEADERS,
        "mcp-session-id": opened.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-06-18",
    }
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    return session


def _cancel(request_id: int) -> dict[str, object]:
    return {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}


async def test_a_held_call_cancelled_by_its_client_is_released_and_no_other_session_can_cancel_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    async with (
        mcp_upstream() as upstream,
        run_proxy(approval_config(upstream, audit_path=str(db))) as app,
        httpx.AsyncClient(timeout=30) as http,
    ):
        agent = await _initialized(http, app.mcp_url)
        stranger = await _initialized(http, app.mcp_url)
        body = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": "create_payment", "arguments": PAYMENT},
        }
        call = asyncio.create_task(http.post(app.mcp_url, json=body, headers=agent))
        ticket = await held_ticket(app)

        # Another session's cancellation of "its" request 7 touches nothing.
        foreign = await http.post(app.mcp_url, json=_cancel(7), headers=stranger)
        assert foreign.status_code == 202
        await asyncio.sleep(0.2)  # give a wrong cancellation the chance to land (it must not)
        assert not call.done()
        assert app.approvals.held == 1

        own = await http.post(app.mcp_url, json=_cancel(7), headers=agent)
        assert own.status_code == 202
        async with asyncio.timeout(10):
            answered = await call
        await ticket_status(app, ticket["id"], "client_disconnected")
    assert answered.status_code == 200
    error = answered.json()["error"]
    assert error["code"] == -32001
    assert error["data"]["reason"] == "request_cancelled"
    assert error["data"]["retry_allowed"] is True
    [record] = [r for r in records(db) if r["tool_name"] == "create_payment"]
    assert record["block_reason"] == "request_cancelled"
    assert record["success"] is None


LARGE_PAYMENTS = """
policies:
  default: allow
  rules:
    - name: large-payments
      match:
        tool: create_payment
        input: {'$.amount': {gt: 1000}}
      action: require_approval
      approval: {timeout: 1m}
"""


async def test_an_amount_sent_as_a_string_is_held_for_approval_exactly_like_the_number(
    tmp_path: Path,
) -> None:
    """The demo server (official SDK) reads "5000" and "NaN" as numbers, so the rule must too.

    With schema enforcement (the default) such calls are refused as ``invalid_arguments`` before
    any rule (test_data_plane.py); here it is off, as an operator may set it for such a server.
    """
    db = tmp_path / "audit.db"
    held: list[dict[str, object]] = []
    no_schema = LARGE_PAYMENTS + "data_plane: {input_schema: 'off'}\n"
    async with (
        mcp_upstream() as upstream,
        run_proxy(approval_config(upstream, no_schema, audit_path=str(db))) as app,
        Client(app.mcp_url, mode="legacy") as client,
    ):
        for amount in (5000, "5000", " 5e3 ", "NaN"):
            call = asyncio.create_task(client.call_tool("create_payment", {"amount": amount}))
            ticket = await held_ticket(app)
            held.append({"rule": ticket["matched_rule"], "input": ticket["tool_input"]})
            await decide(app, ticket["id"], "deny", BOB, {"reason": "too large"})
            with pytest.raises(MCPError) as caught:
                async with asyncio.timeout(10):
                    await call
            assert caught.value.data["reason"] == "approval_denied"
        small = await client.call_tool("create_payment", {"amount": "999.5"})
    assert held == [
        {"rule": "large-payments", "input": {"amount": 5000}},
        {"rule": "large-payments", "input": {"amount": "5000"}},
        {"rule": "large-payments", "input": {"amount": " 5e3 "}},
        {"rule": "large-payments", "input": {"amount": "NaN"}},
    ]
    # Under the limit, the string passes the rule and the upstream reads it as the number.
    assert small.is_error is False
    assert small.structured_content is not None
    assert small.structured_content["amount"] == "999.5"
    payments = [r for r in records(db) if r["tool_name"] == "create_payment"]
    assert [(r["policy_decision"], r["block_reason"]) for r in payments] == [
        ("require_approval", "approval_denied"),
        ("require_approval", "approval_denied"),
        ("require_approval", "approval_denied"),
        ("require_approval", "approval_denied"),
        ("allow", None),
    ]
