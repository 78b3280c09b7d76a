"""The operator REST API on the dashboard port: auth, roles, CSRF, envelopes, live events."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx

from helio_proxy.app import HelioApp
from helio_proxy.config import LoadedConfig, parse_config_text
from helio_proxy.operator import ApiRoute, Principal, ok, read_json
from helio_proxy.operator.auth import secret_digest
from tests.harness import mcp_upstream, proxy_config, run_proxy

SECRET = "s" * 64
ALICE = "alice-secret-0123456789"
VIEWER = "victor-secret-0123456789"


def _config(upstream: str, extra: str = "") -> str:
    text = proxy_config(upstream, extra)
    return text.replace(
        "dashboard:\n  enabled: false\n",
        "dashboard:\n  enabled: true\n  port: 0\n"
        f"  api_secret: '{SECRET}'\n"
        "  sse_heartbeat_interval: 1s\n"
        "  operators:\n"
        f"    - {{name: alice, secret_hash: '{secret_digest(ALICE)}', roles: [approver]}}\n"
        f"    - {{name: victor, secret_hash: '{secret_digest(VIEWER)}', roles: [viewer]}}\n",
    )


async def _echo(request: Any, principal: Principal) -> Any:
    body = await read_json(request)
    return ok({"operator": principal.name, "body": body})


async def test_auth_roles_csrf_and_envelopes() -> None:
    async with mcp_upstream() as upstream, run_proxy(_config(upstream)) as app:
        base = app.dashboard_url
        async with httpx.AsyncClient(base_url=base) as http:
            health = await http.get("/api/health")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"

            anonymous = await http.get("/api/auth/session")
            assert anonymous.status_code == 401
            assert "authentication required" in anonymous.json()["error"]

            wrong = await http.get("/api/auth/session", headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401

            admin = await http.get("/api/auth/session", headers={"authorization": f"Bearer {SECRET}"})
            assert admin.json()["data"] == {"operator": "api_secret", "role": "admin", "via": "api_secret"}

            alice = await http.get("/api/auth/session", headers={"authorization": f"Bearer {ALICE}"})
            assert alice.json()["data"]["operator"] == "alice"

            unknown = await http.get("/api/nope", headers={"authorization": f"Bearer {SECRET}"})
            assert unknown.status_code == 404
            assert unknown.json()["error"].startswith("unknown API path")

            not_api = await http.get("/")
            assert not_api.status_code == 404

            rebound = await http.get("/api/health", headers={"host": "evil.example"})
            assert rebound.status_code == 403


async def test_login_cookie_needs_csrf_on_mutations_and_logout_ends_it() -> None:
    async with mcp_upstream() as upstream:
        config = parse_config_text(_config(upstream), source="test.yaml")
        loaded = LoadedConfig(config=config, path=Path("test.yaml"), sha256="0" * 64, warnings=[])
        proxy = HelioApp(loaded, out=io.StringIO(), environ={})
        # Components add their endpoints before start (approvals, limits, budgets do).
        proxy.operator_routes.append(ApiRoute("POST", "/api/echo", _echo, role="approver"))
        await proxy.start()
        try:
            async with httpx.AsyncClient(base_url=proxy.dashboard_url) as http:
                bad = await http.post("/api/auth/session", json={"secret": "wrong"})
                assert bad.status_code == 401
                login = await http.post("/api/auth/session", json={"secret": ALICE})
                assert login.status_code == 200
                cookie = login.headers["set-cookie"]
                assert "HttpOnly" in cookie
                assert "SameSite=lax" in cookie
                csrf = login.json()["data"]["csrf_token"]

                no_csrf = await http.post("/api/echo", json={"x": 1})
                assert no_csrf.status_code == 403
                assert "x-helio-csrf" in no_csrf.json()["error"]
                with_csrf = await http.post("/api/echo", json={"x": 1}, headers={"x-helio-csrf": csrf})
                assert with_csrf.json()["data"] == {"operator": "alice", "body": {"x": 1}}

                viewer = await http.post("/api/echo", json={}, headers={"authorization": f"Bearer {VIEWER}"})
                assert viewer.status_code == 403
                assert "approver" in viewer.json()["error"]

                not_json = await http.post(
                    "/api/echo", content=b"{", headers={"authorization": f"Bearer {SECRET}"}
                )
                assert not_json.status_code == 400
                assert "JSON" in not_json.json()["error"]

                wrong_method = await http.get("/api/echo", headers={"authorization": f"Bearer {SECRET}"})
                assert wrong_method.status_code == 405

                await http.post("/api/auth/logout")
                http.cookies.clear()
                after = await http.get("/api/auth/session")
                assert after.status_code == 401
        finally:
            await proxy.stop()


async def test_login_is_throttled_after_repeated_failures() -> None:
    async with mcp_upstream() as upstream, run_proxy(_config(upstream)) as app:
        async with httpx.AsyncClient(base_url=app.dashboard_url) as http:
            for _ in range(10):
                assert (await http.post("/api/auth/session", json={"secret": "guess"})).status_code == 401
            throttled = await http.post("/api/auth/session", json={"secret": SECRET})
            assert throttled.status_code == 429
            assert int(throttled.headers["retry-after"]) >= 1


async def test_events_stream_carries_published_events_with_ids_and_heartbeats() -> None:
    async with mcp_upstream() as upstream, run_proxy(_config(upstream)) as app:
        async with httpx.AsyncClient(base_url=app.dashboard_url, timeout=10) as http:
            headers = {"authorization": f"Bearer {VIEWER}"}
            async with http.stream("GET", "/api/events", headers=headers) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.aiter_lines()
                assert await anext(lines) == ": connected"
                async with asyncio.timeout(5):
                    while app.events.subscribers == 0:  # noqa: ASYNC110 - polling a counter, bounded
                        await asyncio.sleep(0.01)
                app.events.publish("limit_warning", {"bucket": "tool:search"})
                seen: list[str] = []
                async with asyncio.timeout(5):
                    async for line in lines:
                        seen.append(line)
                        if line.startswith("data:") and "limit_warning" in line:
                            break
                assert any(line.startswith("id: ") for line in seen)
                assert "event: limit_warning" in seen
                data = json.loads(seen[-1][len("data: ") :])
                assert data["data"] == {"bucket": "tool:search"}
                heartbeat: list[str] = []
                async with asyncio.timeout(5):
                    async for line in lines:
                        heartbeat.append(line)
                        if line == "event: heartbeat":
                            break
                assert "event: heartbeat" in heartbeat


async def test_an_operator_configured_with_the_hash_helio_secret_printed_logs_in_with_its_secret() -> None:
    from click.testing import CliRunner

    from helio_proxy.cli import cli

    printed = json.loads(CliRunner().invoke(cli, ["secret", "--json"]).stdout)
    async with mcp_upstream() as upstream:
        config = _config(upstream).replace(
            "  operators:\n",
            f"  operators:\n    - {{name: carol, secret_hash: '{printed['hash']}', roles: [admin]}}\n",
        )
        async with run_proxy(config) as app, httpx.AsyncClient(base_url=app.dashboard_url) as http:
            carol = await http.get(
                "/api/auth/session", headers={"authorization": f"Bearer {printed['secret']}"}
            )
            with_hash = await http.get(
                "/api/auth/session", headers={"authorization": f"Bearer {printed['hash']}"}
            )
    assert carol.json()["data"] == {"operator": "carol", "role": "admin", "via": "operator"}
    assert with_hash.status_code == 401
