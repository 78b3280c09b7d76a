"""The console's operator API through the real proxy: every route's auth, roles, CSRF and Host
checks and its error shape; audit filters, keyset pages, export, detail with chain status; the
feed and live ``action`` events; analytics; session view; tools and accepting a drift."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from helio_proxy.app import HelioApp
from helio_proxy.baselines import load_tools
from helio_proxy.baselines.table import write_accepted, write_pending
from helio_proxy.operator.auth import LOGIN_FAILURE_LIMIT, secret_digest
from helio_proxy.policy.baselines import PendingDrift, ToolBaseline
from tests.harness import mcp_upstream, run_proxy

SECRET = "console-secret-0123456789abcdef"
APPROVER = "anna-secret-0123456789abcdef"
VIEWER = "vic-secret-0123456789abcdef"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
OPEN_ROUTES = {("GET", "/api/health"), ("POST", "/api/auth/session"), ("POST", "/api/auth/logout")}
OPEN_ROUTES |= {("POST", "/api/auth/token-exchange")}
ROLE_RANK = {"viewer": 0, "approver": 1, "admin": 2}


def _config(a_url: str, b_url: str, db: Path) -> str:
    return f"""
version: '1'
upstreams:
  - {{name: a, url: '{a_url}', request_timeout: 5s}}
  - {{name: b, url: '{b_url}', request_timeout: 5s}}
listen: {{port: 0}}
dashboard:
  port: 0
  api_secret: '{SECRET}'
  sse_heartbeat_interval: 1s
  operators:
    - {{name: anna, secret_hash: '{secret_digest(APPROVER)}', roles: [approver]}}
    - {{name: vic, secret_hash: '{secret_digest(VIEWER)}', roles: [viewer]}}
audit: {{path: '{db}'}}
policies:
  rules:
    - name: no-deletes
      match: {{tool: delete_user}}
      action: deny
    - name: weather-only-on-a
      match: {{upstreams: [b], tool: get_weather}}
      action: deny
"""


@asynccontextmanager
async def _proxy(db: Path) -> AsyncIterator[HelioApp]:
    async with (
        mcp_upstream(stateless=True, json_response=True) as a_url,
        mcp_upstream(stateless=True, json_response=True) as b_url,
        run_proxy(_config(a_url, b_url, db)) as app,
    ):
        yield app


async def _call(
    http: httpx.AsyncClient, app: HelioApp, upstream: str, tool: str, args: dict[str, Any], session: str
) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}}
    response = await http.post(
        f"{app.base_url}/mcp/{upstream}", json=body, headers={**HEADERS, "x-helio-session-id": session}
    )
    assert response.status_code == 200, response.text
    return response.json()


def _bearer(secret: str = SECRET) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def _is_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) <= {"error", "code", "details"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert body["code"] == code, body
    return body


async def _wait_records(http: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(10):
        while True:
            page = (await http.get("/api/audit?kind=tool_call&limit=500", headers=_bearer())).json()
            if len(page["data"]) >= count:
                return page["data"]
            await asyncio.sleep(0.05)


def _routes(schema: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(method, concrete path, role) of every operation in the schema."""
    out: list[tuple[str, str, str]] = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            description = operation.get("description", "")
            role = next((r for r in ROLE_RANK if f"`{r}`" in description), "viewer")
            concrete = path.replace("{", "x").replace("}", "")
            out.append((method.upper(), concrete, role))
    return out


async def test_every_route_refuses_without_credentials_csrf_role_or_own_host(tmp_path: Path) -> None:
    async with _proxy(tmp_path / "audit.db") as app, httpx.AsyncClient(base_url=app.dashboard_url) as http:
        schema = (await http.get("/api/openapi.json", headers=_bearer())).json()
        _is_error(await http.get("/api/openapi.json"), 401, "unauthorized")
        routes = _routes(schema)
        assert len(routes) >= 20
        paths = {p for _, p, _ in routes}
        for wanted in ("/api/audit", "/api/feed", "/api/analytics", "/api/tools", "/api/audit/export"):
            assert wanted in paths
        viewer_login = await http.post("/api/auth/session", json={"secret": VIEWER})
        csrf = viewer_login.json()["data"]["csrf_token"]
        session_cookie = {"cookie": f"helio_session={viewer_login.cookies['helio_session']}"}
        http.cookies.clear()
        for method, path, role in routes:
            if (method, path) in OPEN_ROUTES or (method, path.replace("x", "{")) in OPEN_ROUTES:
                continue
            if path.startswith("/api/auth/"):
                continue
            # No credentials at all.
            _is_error(await http.request(method, path, json={}), 401, "unauthorized")
            # A foreign Host (DNS rebinding), even with the admin secret.
            foreign = await http.request(method, path, json={}, headers={**_bearer(), "host": "evil.example"})
            _is_error(foreign, 403, "host_forbidden")
            # A viewer on a route that needs more.
            if ROLE_RANK[role] > 0:
                _is_error(
                    await http.request(method, path, json={}, headers=_bearer(VIEWER)), 403, "forbidden"
                )
            # A cookie session mutating without the CSRF header.
            if method != "GET":
                refused = await http.request(method, path, json={}, headers=session_cookie)
                _is_error(refused, 403, "csrf_failed")
                with_csrf = await http.request(
                    method, path, json={}, headers={**session_cookie, "x-helio-csrf": csrf}
                )
                assert with_csrf.status_code != 403 or with_csrf.json()["code"] == "forbidden"
        # Unknown /api paths and wrong methods answer in the one error shape too.
        _is_error(await http.get("/api/no/such/thing", headers=_bearer()), 404, "not_found")
        _is_error(await http.delete("/api/audit", headers=_bearer()), 405, "method_not_allowed")
        bad = _is_error(await http.get("/api/audit?limit=0", headers=_bearer()), 400, "invalid_request")
        assert bad["details"]["errors"][0]["loc"][-1] == "limit"
        _is_error(await http.get("/api/audit?cursor=nonsense", headers=_bearer()), 400, "invalid_request")
        # Docs UI behind auth.
        _is_error(await http.get("/api/docs"), 401, "unauthorized")
        docs = await http.get("/api/docs", headers=_bearer())
        assert docs.status_code == 200
        assert "/api/openapi.json" in docs.text


async def test_repeated_wrong_secrets_are_throttled_with_the_error_shape(tmp_path: Path) -> None:
    async with _proxy(tmp_path / "audit.db") as app, httpx.AsyncClient(base_url=app.dashboard_url) as http:
        for _ in range(LOGIN_FAILURE_LIMIT):
            _is_error(await http.post("/api/auth/session", json={"secret": "wrong"}), 401, "unauthorized")
        throttled = await http.post("/api/auth/session", json={"secret": SECRET})
        _is_error(throttled, 429, "too_many_requests")
        assert int(throttled.headers["retry-after"]) > 0
        # The token exchange counts against the same throttle.
        token = app.operator_api.auth.issue_login_token() if app.operator_api else ""
        _is_error(
            await http.post("/api/auth/token-exchange", json={"token": token}), 429, "too_many_requests"
        )
        cross = await http.post(
            "/api/auth/session", json={"secret": SECRET}, headers={"origin": "http://evil.example"}
        )
        _is_error(cross, 403, "origin_forbidden")


async def test_a_one_time_login_token_gives_one_session_once(tmp_path: Path) -> None:
    async with _proxy(tmp_path / "audit.db") as app, httpx.AsyncClient(base_url=app.dashboard_url) as http:
        assert app.operator_api is not None
        token = app.operator_api.auth.issue_login_token()
        _is_error(await http.post("/api/auth/token-exchange", json={"token": "x" * 43}), 401, "unauthorized")
        exchanged = await http.post("/api/auth/token-exchange", json={"token": token})
        assert exchanged.status_code == 200, exchanged.text
        assert "HttpOnly" in exchanged.headers["set-cookie"]
        data = exchanged.json()["data"]
        assert data["operator"] == "api_secret"
        assert data["role"] == "admin"
        me = await http.get("/api/auth/session")
        assert me.json()["data"]["csrf_token"] == data["csrf_token"]
        http.cookies.clear()
        _is_error(await http.post("/api/auth/token-exchange", json={"token": token}), 401, "unauthorized")
        expired = app.operator_api.auth.issue_login_token(lifetime=-1)
        _is_error(await http.post("/api/auth/token-exchange", json={"token": expired}), 401, "unauthorized")


async def test_audit_filters_pages_detail_export_and_feed(tmp_path: Path) -> None:
    async with (
        _proxy(tmp_path / "audit.db") as app,
        httpx.AsyncClient(timeout=10) as mcp,
        httpx.AsyncClient(base_url=app.dashboard_url, headers=_bearer()) as http,
    ):
        await _call(mcp, app, "a", "get_weather", {"city": "Oslo"}, "s-1")
        await _call(mcp, app, "b", "get_weather", {"city": "Lima"}, "s-1")
        await _call(mcp, app, "a", "delete_user", {"user_id": "u-77"}, "s-2")
        for n in range(4):
            await _call(mcp, app, "a", "search_docs", {"query": f"refund policy {n}"}, "s-3")
        records = await _wait_records(http, 7)
        assert [r["tool_name"] for r in records[:1]] == ["search_docs"]  # newest first

        async def listed(query: str) -> list[dict[str, Any]]:
            response = await http.get(f"/api/audit?kind=tool_call&{query}")
            assert response.status_code == 200, response.text
            return response.json()["data"]

        assert {r["upstream"] for r in await listed("upstream=b")} == {"b"}
        assert [r["tool_name"] for r in await listed("upstream=b")] == ["get_weather"]
        assert len(await listed("tool=search_docs")) == 4
        denied = await listed("decision=deny")
        assert {(r["tool_name"], r["upstream"]) for r in denied} == {
            ("delete_user", "a"),
            ("get_weather", "b"),
        }
        assert {r["matched_rule"] for r in await listed("rule=no-deletes")} == {"no-deletes"}
        assert {r["block_reason"] for r in await listed("reason=policy_denied")} == {"policy_denied"}
        assert len(await listed("session=s-3")) == 4
        assert [r["tool_input"] for r in await listed("q=u-77")] == [{"user_id": "u-77"}]
        assert len(await listed("q=refund")) == 4
        assert len(await listed("q=refu")) == 4  # prefix
        assert await listed("q=nothinglikethis") == []
        oldest = records[-1]["timestamp"]
        assert len(await listed(f"to={oldest}")) == 0
        assert len(await listed(f"from={oldest}")) == 7
        future = "2999-01-01T00:00:00Z"
        assert await listed(f"from={future}") == []

        # Keyset pages: 3 + 3 + 1, no record twice, in order.
        seen: list[str] = []
        cursor = ""
        for _ in range(3):
            page = (await http.get(f"/api/audit?kind=tool_call&limit=3&cursor={cursor}")).json()
            seen += [r["id"] for r in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [r["id"] for r in records]
        assert cursor is None

        count = (await http.get("/api/audit/count?kind=tool_call&tool=search_docs")).json()
        assert count == {"data": {"total": 4}}

        detail = (await http.get(f"/api/audit/{denied[0]['id']}")).json()["data"]
        assert detail["id"] == denied[0]["id"]
        assert detail["chain"]["status"] == "ok"
        assert detail["chain"]["hash_matches"] is True
        _is_error(await http.get("/api/audit/no-such-record"), 404, "not_found")

        exported = await http.get("/api/audit/export?kind=tool_call&tool=search_docs&format=csv")
        assert exported.headers["content-type"].startswith("text/csv")
        assert "attachment" in exported.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [r["tool_name"] for r in rows] == ["search_docs"] * 4
        as_json = await http.get("/api/audit/export?kind=tool_call&decision=deny&format=json")
        assert {r["tool_name"] for r in json.loads(as_json.text)} == {"delete_user", "get_weather"}

        feed = (await http.get("/api/feed?limit=2")).json()
        assert len(feed["data"]) == 2
        assert all(r["record_kind"] == "tool_call" for r in feed["data"])
        assert feed["next_cursor"] is not None


async def test_a_new_call_reaches_events_as_an_action_within_a_second(tmp_path: Path) -> None:
    async with (
        _proxy(tmp_path / "audit.db") as app,
        httpx.AsyncClient(timeout=10) as mcp,
        httpx.AsyncClient(base_url=app.dashboard_url, headers=_bearer(VIEWER), timeout=10) as http,
        http.stream("GET", "/api/events") as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        assert await anext(lines) == ": connected"
        await asyncio.sleep(0.3)  # the tail starts at the store's current end
        started = asyncio.get_running_loop().time()
        await _call(mcp, app, "a", "get_weather", {"city": "Oslo"}, "live-1")
        async with asyncio.timeout(5):
            async for line in lines:
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event["type"] == "action":
                        break
        assert asyncio.get_running_loop().time() - started < 1.5
        assert event["data"]["tool_name"] == "get_weather"
        assert event["data"]["session_id"] == "live-1"
        assert event["data"]["upstream"] == "a"


async def test_analytics_session_view_tools_and_accepting_a_drift(tmp_path: Path) -> None:
    async with (
        _proxy(tmp_path / "audit.db") as app,
        httpx.AsyncClient(timeout=10) as mcp,
        httpx.AsyncClient(base_url=app.dashboard_url, headers=_bearer()) as http,
    ):
        await _call(mcp, app, "a", "get_weather", {"city": "Oslo"}, "s-9")
        await _call(mcp, app, "a", "get_weather", {"city": "Rome"}, "s-9")
        await _call(mcp, app, "a", "delete_user", {"user_id": "u-1"}, "s-9")
        await _wait_records(http, 3)

        stats = (await http.get("/api/analytics")).json()["data"]
        assert stats["total"] == 3
        assert stats["by_decision"] == {"allow": 2, "deny": 1}
        assert stats["by_block_reason"] == {"policy_denied": 1}
        assert stats["top_tools"][0] == {"tool": "get_weather", "count": 2, "blocked": 0}
        assert sum(hour["total"] for hour in stats["series"]) == 3
        assert len(stats["series"]) in (24, 25)
        assert stats["overhead_ms"]["samples"] >= 1
        _is_error(
            await http.get("/api/analytics?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"),
            400,
            "invalid_request",
        )
        now = datetime.now(UTC).isoformat()
        _is_error(
            await http.get(f"/api/analytics?from=2000-01-01T00:00:00Z&to={now}"), 400, "invalid_request"
        )

        view = (await http.get("/api/sessions/s-9")).json()["data"]
        assert [c["tool_name"] for c in view["calls"]] == ["get_weather", "get_weather", "delete_user"]
        assert [c["tool_name"] for c in view["completed_tools"]] == ["get_weather", "get_weather"]
        assert view["calls_truncated"] is False
        empty = (await http.get("/api/sessions/nobody")).json()["data"]
        assert empty["calls"] == []
        assert empty["evidence"] == []

        tools = (await http.get("/api/tools")).json()["data"]
        assert {(t["upstream"], t["name"]) for t in tools} >= {("a", "get_weather"), ("b", "get_weather")}
        weather = next(t for t in tools if (t["upstream"], t["name"]) == ("a", "get_weather"))
        assert weather["drift"] is None
        assert weather["input_schema"]["properties"]["city"]

        _is_error(await http.post("/api/tools/get_weather/accept", json={}), 400, "invalid_request")
        _is_error(await http.post("/api/tools/get_weather/accept", json={"upstream": "a"}), 409, "conflict")
        _is_error(await http.post("/api/tools/nope/accept", json={"upstream": "a"}), 404, "not_found")
        _is_error(await http.post("/api/tools/get_weather/accept", json={"upstream": "zz"}), 404, "not_found")

        # The stored baseline is an older definition; what the upstream serves now is pending.
        stored = app.audit.store
        [current] = await stored.read(load_tools("a", ["get_weather"]))
        described = current.baseline.definition["description"]
        older = ToolBaseline.of({**current.baseline.definition, "description": "Weather, once."})
        drift = PendingDrift(current.baseline, ("description",))
        await stored.write(write_accepted("a", older, datetime.now(UTC)))
        await stored.write(write_pending("a", "get_weather", older.fingerprint, drift, datetime.now(UTC)))
        drifted = next(
            t
            for t in (await http.get("/api/tools")).json()["data"]
            if (t["upstream"], t["name"]) == ("a", "get_weather")
        )
        assert drifted["drift"]["aspects"] == ["description"]
        assert drifted["drift"]["definition"]["description"] == described

        _is_error(
            await http.post(
                "/api/tools/get_weather/accept", json={"upstream": "a"}, headers=_bearer(APPROVER)
            ),
            403,
            "forbidden",
        )
        accepted = await http.post("/api/tools/get_weather/accept", json={"upstream": "a"})
        assert accepted.status_code == 200, accepted.text
        view = accepted.json()["data"]
        assert view["drift"] is None
        assert view["description"] == described
        assert view["accepted_by"] == "api_secret"
        assert view["fingerprint"] == drift.current.fingerprint


@pytest.mark.parametrize("path", ["/", "/assets/app.js"])
async def test_paths_outside_api_go_to_the_ui_when_one_is_installed(tmp_path: Path, path: str) -> None:
    async def ui(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": f"ui:{scope['path']}".encode()})

    async with mcp_upstream(stateless=True, json_response=True) as a_url, mcp_upstream() as b_url:
        from helio_proxy.config import load_config_text

        loaded = load_config_text(_config(a_url, b_url, tmp_path / "audit.db"), path="test.yaml")
        proxy = HelioApp(loaded, out=io.StringIO(), environ={})
        proxy.dashboard_ui = ui
        await proxy.start()
        try:
            async with httpx.AsyncClient(base_url=proxy.dashboard_url) as http:
                answer = await http.get(path)
                assert answer.text == f"ui:{path}"
                _is_error(await http.get(path, headers={"host": "evil.example"}), 403, "host_forbidden")
        finally:
            await proxy.stop()
