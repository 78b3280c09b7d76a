"""Shared by the approval tests: a proxy with the dashboard on, operators, raw calls, records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from helio_proxy.app import HelioApp
from helio_proxy.operator.auth import secret_digest
from tests.harness import audit_records, proxy_config, serve_asgi

SECRET = "s" * 40
ALICE = "alice-secret-0123456789"
BOB = "bob-secret-0123456789"
ROOT = "root-secret-0123456789"
VIEWER = "victor-secret-0123456789"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

PAYMENTS = """
policies:
  rules:
    - name: approve-payments
      match: {tool: create_payment}
      action: require_approval
      approval: {timeout: 1m}
"""


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def approval_config(
    upstream: str, policies: str = PAYMENTS, extra: str = "", *, audit_path: str | None = None
) -> str:
    """The harness config with the dashboard on: the shared secret, two approvers, an admin, a viewer."""
    text = proxy_config(upstream, policies + extra, audit_path=audit_path)
    return text.replace(
        "dashboard:\n  enabled: false\n",
        "dashboard:\n  enabled: true\n  port: 0\n"
        f"  api_secret: '{SECRET}'\n"
        "  operators:\n"
        f"    - {{name: alice, secret_hash: '{secret_digest(ALICE)}', roles: [approver]}}\n"
        f"    - {{name: bob, secret_hash: '{secret_digest(BOB)}', roles: [approver]}}\n"
        f"    - {{name: root, secret_hash: '{secret_digest(ROOT)}', roles: [admin]}}\n"
        f"    - {{name: victor, secret_hash: '{secret_digest(VIEWER)}', roles: [viewer]}}\n",
    )


async def wait_until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Until ``predicate()`` holds (bounded)."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - polling state another task changes, bounded
            await asyncio.sleep(0.01)


async def ticket_status(app: HelioApp, ticket_id: str, status: str, seconds: float = 10.0) -> None:
    """Until the stored ticket has ``status`` (bounded)."""
    async with asyncio.timeout(seconds):
        while True:
            ticket = await app.approvals.get(ticket_id)
            if ticket is not None and ticket.status.value == status:
                return
            await asyncio.sleep(0.01)


async def held_ticket(app: HelioApp, count: int = 1) -> dict[str, Any]:
    """Wait until ``count`` calls are held; the newest pending ticket (from the REST API)."""
    await wait_until(lambda: app.approvals.held >= count)
    async with httpx.AsyncClient(base_url=app.dashboard_url) as http:
        listed = await http.get("/api/approvals", params={"status": "pending"}, headers=bearer(SECRET))
    assert listed.status_code == 200
    return listed.json()["data"][0]


async def decide(
    app: HelioApp, ticket_id: str, verdict: str, secret: str = ALICE, body: dict[str, Any] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=app.dashboard_url) as http:
        return await http.post(
            f"/api/approvals/{ticket_id}/{verdict}", json=body or {}, headers=bearer(secret)
        )


async def raw_call(
    url: str, name: str, arguments: dict[str, Any], *, session: str = "agent-1", request_id: int = 1
) -> dict[str, Any]:
    """A ``tools/call`` over plain HTTP with an ``x-helio-session-id``; the JSON-RPC answer."""
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(url, json=body, headers={**HEADERS, "x-helio-session-id": session})
    assert response.status_code == 200
    if response.headers["content-type"].startswith("application/json"):
        return response.json()
    data = [line for line in response.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1][5:])


def records(db: Path, kind: str = "tool_call") -> list[dict[str, Any]]:
    """Every audit record of ``kind`` in the SQLite store at ``db``, oldest first."""
    return audit_records(db, record_kind=kind)


class Receiver:
    """A local HTTP receiver (a webhook endpoint, a fake Slack Web API) recording every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, _, body in self.requests]

    @asynccontextmanager
    async def serve(self, answer: Any) -> AsyncIterator[str]:
        async def endpoint(request: Request) -> JSONResponse:
            body = await request.body()
            self.requests.append((request.url.path, dict(request.headers), body))
            return answer(request.url.path, body)

        app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST"])])
        async with serve_asgi(app, lifespan="off") as base:
            yield base
