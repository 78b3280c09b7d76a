"""Tickets outlive the process that held the call, and are shared by proxies on one database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from helio_proxy.config import load_config
from helio_proxy.store.testing import postgres_schema
from tests.harness import mcp_upstream, run_proxy
from tests.integration.approval_support import (
    ALICE,
    BOB,
    SECRET,
    approval_config,
    bearer,
    decide,
    held_ticket,
    raw_call,
    records,
    wait_until,
)

PAYMENT = {"amount": 99, "recipient": "acme"}


async def test_after_a_restart_the_ticket_is_listed_and_its_approval_releases_the_identical_retry_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    async with mcp_upstream(stateless=True) as upstream:
        config = approval_config(upstream, audit_path=str(db))
        async with run_proxy(config) as first:
            call = asyncio.create_task(raw_call(first.mcp_url, "create_payment", PAYMENT, session="agent-7"))
            ticket = await held_ticket(first)
        async with asyncio.timeout(10):
            cancelled = await call  # answered before the listener stopped
        data = cancelled["error"]["data"]
        assert (data["reason"], data["retry_allowed"], data["ticket_id"]) == (
            "shutdown_cancelled",
            True,
            ticket["id"],
        )

        async with run_proxy(config) as second:
            async with httpx.AsyncClient(base_url=second.dashboard_url, headers=bearer(SECRET)) as http:
                listed = (await http.get("/api/approvals", params={"status": "orphaned"})).json()["data"]
            assert [t["id"] for t in listed] == [ticket["id"]]
            approved = await decide(second, ticket["id"], "approve", ALICE)
            assert approved.json()["data"]["status"] == "approved"

            changed = asyncio.create_task(
                raw_call(second.mcp_url, "create_payment", {**PAYMENT, "amount": 990}, session="agent-7")
            )
            fresh = await held_ticket(second)
            assert fresh["id"] != ticket["id"]
            assert fresh["tool_input"]["amount"] == 990

            other_session = asyncio.create_task(
                raw_call(second.mcp_url, "create_payment", PAYMENT, session="agent-8", request_id=3)
            )
            await wait_until(lambda: second.approvals.held == 2)

            retry = await raw_call(second.mcp_url, "create_payment", PAYMENT, session="agent-7", request_id=4)
            assert retry["result"]["isError"] is False
            assert retry["result"]["structuredContent"]["amount"] == "99.0"

            twice = asyncio.create_task(
                raw_call(second.mcp_url, "create_payment", PAYMENT, session="agent-7", request_id=5)
            )
            await wait_until(lambda: second.approvals.held == 3)
            pending = (await second.approvals.list("pending", 10, 0))[0]
            assert ticket["id"] not in {t.id for t in pending}
            for held in pending:
                await decide(second, held.id, "deny", BOB, {"reason": "test over"})
            async with asyncio.timeout(10):
                answers = await asyncio.gather(changed, other_session, twice)
            consumed = await second.approvals.get(ticket["id"])
    assert [a["error"]["data"]["reason"] for a in answers] == ["approval_denied"] * 3
    assert consumed is not None
    assert consumed.status.value == "consumed"
    payments = [r for r in records(db) if r["tool_name"] == "create_payment"]
    released = [r for r in payments if r["block_reason"] is None]
    assert len(released) == 1
    assert released[0]["approved_by"] == "alice"
    assert released[0]["evidence_chain"]["approval"]["retry"] is True
    assert released[0]["evidence_chain"]["approval"]["ticket_id"] == ticket["id"]
    assert sorted(r["block_reason"] for r in payments if r["block_reason"]) == [
        "approval_denied",
        "approval_denied",
        "approval_denied",
        "shutdown_cancelled",
    ]


async def test_an_identical_retry_before_anyone_decided_waits_on_the_same_ticket(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    async with mcp_upstream(stateless=True) as upstream:
        config = approval_config(upstream, audit_path=str(db))
        async with run_proxy(config) as first:
            call = asyncio.create_task(raw_call(first.mcp_url, "create_payment", PAYMENT, session="agent-9"))
            ticket = await held_ticket(first)
        await call
        async with run_proxy(config) as second:
            retry = asyncio.create_task(
                raw_call(second.mcp_url, "create_payment", PAYMENT, session="agent-9")
            )
            adopted = await held_ticket(second)
            assert adopted["id"] == ticket["id"]
            await decide(second, ticket["id"], "approve", ALICE)
            async with asyncio.timeout(10):
                answer = await retry
    assert answer["result"]["isError"] is False


@pytest.mark.postgres
async def test_a_ticket_approved_through_another_proxy_releases_the_call_held_here() -> None:
    with postgres_schema() as url:
        async with mcp_upstream(stateless=True) as upstream:
            config = approval_config(upstream, extra=f"store:\n  url: '{url}'\n")
            async with run_proxy(config) as holder, run_proxy(config) as other:
                call = asyncio.create_task(raw_call(holder.mcp_url, "create_payment", PAYMENT))
                ticket = await held_ticket(holder)
                assert other.approvals.held == 0
                seen = await decide(other, ticket["id"], "approve", ALICE)
                assert seen.status_code == 200
                async with asyncio.timeout(10):
                    answer = await call
                again = await decide(holder, ticket["id"], "deny", BOB)
    assert answer["result"]["isError"] is False
    assert again.status_code == 409


async def test_an_approval_made_under_one_environment_value_does_not_release_the_call_under_another(
    tmp_path: Path,
) -> None:
    """Issue 22 point 12: the config hash was of the file's bytes, so an approval stayed bound to a
    config whose effective values (here the upstream's API key) had changed."""
    db = tmp_path / "audit.db"
    path = tmp_path / "helio.yaml"
    async with mcp_upstream(stateless=True) as upstream:
        path.write_text(
            approval_config(upstream, audit_path=str(db)).replace(
                "  request_timeout: 5s\n",
                "  request_timeout: 5s\n  headers: {x-api-key: '${UPSTREAM_KEY}'}\n",
            )
        )
        before = load_config(path, env={"UPSTREAM_KEY": "key-before"})
        after = load_config(path, env={"UPSTREAM_KEY": "key-after"})
        assert before.file_sha256 == after.file_sha256
        assert before.sha256 != after.sha256
        async with run_proxy(before) as first:
            call = asyncio.create_task(raw_call(first.mcp_url, "create_payment", PAYMENT, session="agent-5"))
            ticket = await held_ticket(first)
        async with asyncio.timeout(10):
            assert (await call)["error"]["data"]["reason"] == "shutdown_cancelled"
        assert ticket["config_sha256"] == before.sha256

        async with run_proxy(after) as second:
            approved = await decide(second, ticket["id"], "approve", ALICE)
            assert approved.json()["data"]["status"] == "approved"
            retry = asyncio.create_task(
                raw_call(second.mcp_url, "create_payment", PAYMENT, session="agent-5", request_id=2)
            )
            fresh = await held_ticket(second)  # held again, not released by the old approval
            assert fresh["id"] != ticket["id"]
            assert fresh["config_sha256"] == after.sha256
            await decide(second, fresh["id"], "deny", BOB, {"reason": "test over"})
            async with asyncio.timeout(10):
                answer = await retry
            old = await second.approvals.get(ticket["id"])
    assert answer["error"]["data"]["reason"] == "approval_denied"
    assert old is not None
    assert old.status.value == "approved"  # never consumed
    payments = [r for r in records(db) if r["tool_name"] == "create_payment"]
    assert [(r["block_reason"], r["config_sha256"]) for r in payments] == [
        ("shutdown_cancelled", before.sha256),
        ("approval_denied", after.sha256),
    ]


def _staging_and_production(stg: str, prod: str, db: Path) -> str:
    """The approval config with two mounted upstreams, ``/mcp/stg`` and ``/mcp/prod``."""
    single = f"upstream:\n  url: '{stg}'\n  request_timeout: 5s\n"
    config = approval_config(stg, audit_path=str(db))
    assert single in config
    return config.replace(
        single,
        f"upstreams:\n  - {{name: stg, url: '{stg}', request_timeout: 5s}}\n"
        f"  - {{name: prod, url: '{prod}', request_timeout: 5s}}\n",
    )


async def test_an_approval_for_one_upstream_does_not_release_the_identical_call_on_another(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    async with mcp_upstream(stateless=True) as stg, mcp_upstream(stateless=True) as prod:
        config = _staging_and_production(stg, prod, db)
        async with run_proxy(config) as first:
            staging = f"{first.base_url}/mcp/stg"
            held = asyncio.create_task(raw_call(staging, "create_payment", PAYMENT, session="agent-5"))
            ticket = await held_ticket(first)
        async with asyncio.timeout(10):
            assert (await held)["error"]["data"]["reason"] == "shutdown_cancelled"
        assert ticket["upstream"] == "stg"

        async with run_proxy(config) as second:
            approved = await decide(second, ticket["id"], "approve", ALICE, {"comment": "ok for STAGING"})
            assert approved.json()["data"]["status"] == "approved"

            # The identical call (same session, tool, arguments, config) sent to production is
            # another call: it is held on a ticket of its own, naming its upstream.
            on_prod = asyncio.create_task(
                raw_call(f"{second.base_url}/mcp/prod", "create_payment", PAYMENT, session="agent-5")
            )
            prod_ticket = await held_ticket(second)
            assert prod_ticket["id"] != ticket["id"]
            assert (prod_ticket["upstream"], prod_ticket["tool_input"]) == ("prod", PAYMENT)
            assert (await second.approvals.get(ticket["id"])).status.value == "approved"  # type: ignore[union-attr]

            # The staging retry is what the approval releases.
            on_stg = await raw_call(
                f"{second.base_url}/mcp/stg", "create_payment", PAYMENT, session="agent-5", request_id=2
            )
            assert on_stg["result"]["isError"] is False
            await decide(second, prod_ticket["id"], "deny", BOB, {"reason": "staging only"})
            async with asyncio.timeout(10):
                prod_answer = await on_prod
    assert prod_answer["error"]["data"]["reason"] == "approval_denied"
    assert prod_answer["error"]["data"]["ticket_id"] == prod_ticket["id"]
    payments = [r for r in records(db) if r["tool_name"] == "create_payment"]
    assert [(r["metadata"]["upstream"], r["block_reason"]) for r in payments] == [
        ("stg", "shutdown_cancelled"),
        ("stg", None),
        ("prod", "approval_denied"),
    ]
    released = payments[1]["evidence_chain"]["approval"]
    assert (released["ticket_id"], released["upstream"], released["retry"]) == (ticket["id"], "stg", True)
