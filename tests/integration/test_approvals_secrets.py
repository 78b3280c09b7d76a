"""Secrets around approvals: a ticket keeps and shows a call's secret arguments redacted like the
audit (while the approval still binds the exact call), and credentials in configured URLs are never
shown."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse

from helio_proxy.app import HelioApp
from helio_proxy.store.sqlite import SqliteStore
from tests.harness import build_test_upstream, mcp_upstream, run_proxy, serve_asgi
from tests.integration.approval_support import (
    ALICE,
    BOB,
    VIEWER,
    Receiver,
    approval_config,
    bearer,
    decide,
    held_ticket,
    raw_call,
    records,
    wait_until,
)

PASSWORD = "hunter2-correct-horse-battery"
OTHER_PASSWORD = "tr0ub4dor-and-3-more"
PIN = "pin-8675309-0042"
REDACTED_INPUT = {"host": "db1", "password": "[REDACTED]", "unlock_pin": "[REDACTED]"}

PAYMENT_VIA_HOOK = """
policies:
  rules:
    - name: approve-payments
      match: {tool: create_payment}
      action: require_approval
      approval: {channel: ops, timeout: 1m}
approval:
  channels:
    - {type: webhook, name: ops, url: 'HOOK'}
"""

POLICIES = """
policies:
  rules:
    - name: approve-db-access
      match: {tool: connect_database}
      action: require_approval
      approval: {channel: ops, timeout: 1m, escalation_after: 1s, delegates: [slack]}
approval:
  channels:
    - {type: webhook, name: ops, url: 'HOOK/hook'}
    - {type: slack, bot_token: xoxb-test, signing_secret: 'signing-0123', channel: '#ops',
       api_base: 'HOOK/api'}
"""


@asynccontextmanager
async def _database_upstream() -> AsyncIterator[str]:
    """The test upstream plus ``connect_database``, which answers with a digest of the password
    it received (so the test sees which password ran, and no answer repeats it)."""
    server = build_test_upstream()

    @server.tool()
    def connect_database(host: str, password: str, unlock_pin: str) -> dict[str, Any]:
        """Pretends to connect."""
        return {"host": host, "received": hashlib.sha256(password.encode()).hexdigest()}

    app = server.streamable_http_app(stateless_http=True)
    async with serve_asgi(app) as base:
        yield f"{base}/mcp"


def _arguments(password: str) -> dict[str, Any]:
    return {"host": "db1", "password": password, "unlock_pin": PIN}


def _database_files_hold_no_secret(store: object) -> None:
    assert isinstance(store, SqliteStore)
    files = {p.name: p.read_bytes() for p in store.files()}
    assert {"audit.db", "audit.db-wal"} <= set(files)  # live WAL mode: the rows are in the WAL
    for name, data in files.items():
        for secret in (PASSWORD, OTHER_PASSWORD, PIN):
            assert secret.encode() not in data, (name, secret)
    assert b"[REDACTED]" in files["audit.db-wal"]


async def test_a_tickets_arguments_are_stored_and_shown_redacted_while_the_approval_binds_the_exact_call(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    hooks = Receiver()

    def answer(path: str, body: bytes) -> JSONResponse:
        return JSONResponse({"ok": True, "channel": "C1", "ts": "1.5"})

    async with hooks.serve(answer) as base, _database_upstream() as upstream:
        path = f"audit:\n  path: '{db}'\n"
        config = approval_config(upstream, POLICIES.replace("HOOK", base), audit_path=str(db))
        config = config.replace(path, path + "  redact: ['_pin$']\n")  # a pattern of our own
        async with run_proxy(config) as first:
            held = asyncio.create_task(raw_call(first.mcp_url, "connect_database", _arguments(PASSWORD)))
            ticket = await held_ticket(first)
            async with httpx.AsyncClient(base_url=first.dashboard_url, headers=bearer(VIEWER)) as http:
                seen = (await http.get(f"/api/approvals/{ticket['id']}")).json()["data"]
            await wait_until(lambda: len(hooks.requests) == 2)  # the webhook, then Slack at escalation
            await first.audit.writer.flush()
            _database_files_hold_no_secret(first.audit.store)
        async with asyncio.timeout(10):
            assert (await held)["error"]["data"]["reason"] == "shutdown_cancelled"

        async with run_proxy(config) as second:
            assert (await decide(second, ticket["id"], "approve", ALICE)).status_code == 200
            # Only the password differs: another call, held on a ticket of its own.
            other = asyncio.create_task(
                raw_call(second.mcp_url, "connect_database", _arguments(OTHER_PASSWORD), request_id=2)
            )
            other_ticket = await held_ticket(second)
            assert other_ticket["id"] != ticket["id"]
            assert other_ticket["tool_input"] == REDACTED_INPUT
            retry = await raw_call(second.mcp_url, "connect_database", _arguments(PASSWORD), request_id=3)
            await decide(second, other_ticket["id"], "deny", BOB)
            async with asyncio.timeout(10):
                denied = await other
            await second.audit.writer.flush()
            _database_files_hold_no_secret(second.audit.store)
    for path in (db, Path(f"{db}-wal")):
        if path.exists():
            for secret in (PASSWORD, OTHER_PASSWORD, PIN):
                assert secret.encode() not in path.read_bytes(), (path, secret)

    assert seen["tool_input"] == REDACTED_INPUT
    assert (
        seen["arguments_digest"]
        == hashlib.sha256(
            b'{"host":"db1","password":"' + PASSWORD.encode() + b'","unlock_pin":"' + PIN.encode() + b'"}'
        ).hexdigest()
    )
    (hook_path, _, _), (slack_path, _, _) = hooks.requests[:2]
    assert (hook_path, slack_path) == ("/hook", "/api/chat.postMessage")
    webhook, slack = hooks.bodies()[:2]
    assert webhook["ticket"]["tool_input"] == REDACTED_INPUT
    [arguments] = [
        b["text"]["text"]
        for b in slack["blocks"]
        if b.get("text", {}).get("text", "").startswith("*Arguments*")
    ]
    assert '"password": "[REDACTED]"' in arguments
    assert '"unlock_pin": "[REDACTED]"' in arguments
    for _, _, body in hooks.requests:
        for secret in (PASSWORD, OTHER_PASSWORD, PIN):
            assert secret.encode() not in body

    # The approval released the exact call that was asked for: the upstream got the real password.
    assert retry["result"]["isError"] is False
    assert retry["result"]["structuredContent"]["received"] == hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert denied["error"]["data"]["reason"] == "approval_denied"
    released = [r for r in records(db) if r["block_reason"] is None]
    assert [r["tool_input"] for r in released] == [REDACTED_INPUT]


HOOK_USER, HOOK_PASS, HOOK_TOKEN = "hookuser-7f3a", "hookpass-9c1e", "hooktoken-55d0"
UPSTREAM_USER, UPSTREAM_PASS = "upuser-31b8", "uppass-c4e2"
CREDENTIALS = (HOOK_USER, HOOK_PASS, HOOK_TOKEN, UPSTREAM_USER, UPSTREAM_PASS)


async def _events_until(
    http: httpx.AsyncClient, app: HelioApp, started: asyncio.Event, event: str, into: list[str]
) -> None:
    """Collect ``/api/events`` lines (as a viewer) until a ``data:`` line of ``event`` arrives."""
    async with http.stream("GET", "/api/events", headers=bearer(VIEWER)) as stream:
        lines = stream.aiter_lines()
        assert await anext(lines) == ": connected"
        await wait_until(lambda: app.events.subscribers > 0)
        started.set()
        async for line in lines:
            into.append(line)
            if line.startswith("data:") and f'"{event}"' in line:
                return


async def _with_failures(http: httpx.AsyncClient, ticket_id: str) -> dict[str, Any]:
    """The ticket as a viewer reads it, once it records a notification failure (bounded)."""
    async with asyncio.timeout(10):
        while True:
            shown = (await http.get(f"/api/approvals/{ticket_id}", headers=bearer(VIEWER))).json()["data"]
            if shown["notification_failures"]:
                return shown
            await asyncio.sleep(0.01)


async def test_webhook_and_upstream_url_credentials_never_reach_the_log_the_api_or_the_event_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = Receiver()
    caplog.set_level(logging.INFO)
    async with (
        hook.serve(lambda path, body: JSONResponse({"error": "forbidden"}, 403)) as base,
        mcp_upstream(stateless=True) as upstream,
    ):
        host = base.removeprefix("http://")
        policies = PAYMENT_VIA_HOOK.replace(
            "HOOK", f"http://{HOOK_USER}:{HOOK_PASS}@{host}/hook?token={HOOK_TOKEN}"
        )
        credentialed = upstream.replace("http://", f"http://{UPSTREAM_USER}:{UPSTREAM_PASS}@")
        async with run_proxy(approval_config(credentialed, policies)) as app:
            events: list[str] = []
            started = asyncio.Event()
            async with httpx.AsyncClient(base_url=app.dashboard_url, timeout=10) as http:
                watcher = asyncio.create_task(
                    _events_until(http, app, started, "approval_notification_failed", events)
                )
                async with asyncio.timeout(10):
                    await started.wait()
                call = asyncio.create_task(raw_call(app.mcp_url, "create_payment", {"amount": 5}))
                ticket = await held_ticket(app)
                async with asyncio.timeout(10):
                    await watcher
                shown = await _with_failures(http, ticket["id"])
            await decide(app, ticket["id"], "deny", BOB)
            async with asyncio.timeout(10):
                await call
            banner = app.out.getvalue() if isinstance(app.out, io.StringIO) else ""
    [failure] = shown["notification_failures"]
    assert (failure["channel"], failure["stage"]) == ("ops", "requested")
    assert f"webhook 'ops' (http://{host}): HTTP 403" in failure["error"]
    [event] = [json.loads(line[len("data:") :]) for line in events if line.startswith("data:")][-1:]
    assert event["data"]["error"] == failure["error"]
    logged = [r.getMessage() for r in caplog.records]  # ours and the libraries' (httpx logs URLs)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("helio_proxy")]
    assert any(f"(http://{host}): HTTP 403" in line for line in ours)
    assert f"Upstream: {upstream.removesuffix('/mcp')} (streamable-http)" in banner
    for secret in CREDENTIALS:
        assert secret not in json.dumps(shown), secret
        assert secret not in "\n".join(events), secret
        assert not [line for line in ours if secret in line], secret
        assert secret not in banner, secret
    for secret in (HOOK_USER, HOOK_PASS, UPSTREAM_USER, UPSTREAM_PASS):
        assert not [line for line in logged if secret in line], secret
    # The receiver still gets the credentials, as a Basic Authorization header (each notice once:
    # a 403 is not retried).
    basic = "Basic " + base64.b64encode(f"{HOOK_USER}:{HOOK_PASS}".encode()).decode()
    assert [(path, headers["authorization"]) for path, headers, _ in hook.requests[:1]] == [("/hook", basic)]
