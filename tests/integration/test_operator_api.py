"""The operator REST API on the dashboard port: auth, roles, CSRF, envelopes, live events."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from helio_proxy import console
from helio_proxy.app import HelioApp
from helio_proxy.config import LoadedConfig, parse_config_text
from helio_proxy.operator import ApiRoute, Principal, ok, read_json
from helio_proxy.operator.auth import secret_digest
from helio_proxy.operator.origin import same_origin
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

            # Outside /api/: the console's page when it is built (issue 13), else a JSON 404.
            not_api = await http.get("/")
            if console.assets_available():
                assert not_api.status_code == 200
                assert not_api.headers["content-type"].startswith("text/html")
            else:
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

                logged_out = await http.post("/api/auth/logout", json={})
                assert logged_out.status_code == 200
                assert 'helio_session=""' in logged_out.headers["set-cookie"]
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


async def test_a_rotating_x_forwarded_for_does_not_reset_login_throttling() -> None:
    async with mcp_upstream() as upstream, run_proxy(_config(upstream)) as app:
        async with httpx.AsyncClient(base_url=app.dashboard_url) as http:
            statuses = [
                (
                    await http.post(
                        "/api/auth/session",
                        json={"secret": f"guess-{n}"},
                        headers={"x-forwarded-for": f"10.0.0.{n}", "x-real-ip": f"10.0.0.{n}"},
                    )
                ).status_code
                for n in range(30)
            ]
    assert statuses == [401] * 10 + [429] * 20


async def _send_login_head(port: int, secret: str) -> tuple[asyncio.StreamWriter, asyncio.Task[bytes], bytes]:
    """A login request on its own connection with all but the end of its body sent; returns the
    writer, a task reading the whole response, and the bytes still to send."""
    body = json.dumps({"secret": secret}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /api/auth/session HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body[:5]
    )
    await writer.drain()
    return writer, asyncio.create_task(reader.read()), body[5:]


async def test_forty_concurrent_wrong_logins_from_one_address_get_exactly_ten_evaluated() -> None:
    async with mcp_upstream() as upstream, run_proxy(_config(upstream)) as app:
        port = int(app.dashboard_url.rsplit(":", 1)[1])
        # Every request is in the handler, its body not yet complete, before any is decided.
        pending = [await _send_login_head(port, f"guess-{n}") for n in range(40)]
        async with httpx.AsyncClient(base_url=app.dashboard_url) as http:
            assert (await http.get("/api/health")).status_code == 200
            for writer, response, rest in pending:
                if not response.done():
                    with contextlib.suppress(OSError):  # already answered 429 and closed
                        writer.write(rest)
                        await writer.drain()
            async with asyncio.timeout(10):
                answers = [await response for _, response, _ in pending]
            for writer, _, _ in pending:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            after = await http.post("/api/auth/session", json={"secret": SECRET})
    statuses = Counter(int(answer.split(b" ", 2)[1]) for answer in answers)
    assert statuses == {401: 10, 429: 30}
    assert after.status_code == 429


async def test_with_trusted_proxies_login_throttling_counts_the_forwarded_client() -> None:
    async with mcp_upstream() as upstream:
        text = _config(upstream).replace(
            "  sse_heartbeat_interval: 1s\n",
            "  sse_heartbeat_interval: 1s\n  trusted_proxies: ['127.0.0.1']\n",
        )
        async with run_proxy(text) as app, httpx.AsyncClient(base_url=app.dashboard_url) as http:

            async def guess(forwarded_for: str | None) -> int:
                headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
                answer = await http.post("/api/auth/session", json={"secret": "guess"}, headers=headers)
                return answer.status_code

            first = [await guess("203.0.113.7") for _ in range(12)]
            other = await guess("203.0.113.8")
            proxy_itself = await guess(None)
    assert first == [401] * 10 + [429] * 2
    assert (other, proxy_itself) == (401, 401)


async def test_a_cross_site_login_is_refused_and_sets_no_cookie() -> None:
    """Login CSRF: a page elsewhere must not log the operator's browser into a session."""
    async with mcp_upstream() as upstream, run_proxy(_config(upstream)) as app:
        port = int(app.dashboard_url.rsplit(":", 1)[1])
        body = json.dumps({"secret": ALICE})
        async with httpx.AsyncClient(base_url=app.dashboard_url) as http:

            async def login(
                content_type: str, origin: str | None = None, host: str | None = None
            ) -> httpx.Response:
                headers = {"content-type": content_type}
                if origin is not None:
                    headers["origin"] = origin
                if host is not None:
                    headers["host"] = host
                return await http.post("/api/auth/session", content=body, headers=headers)

            refused = {
                "text/plain from elsewhere": await login("text/plain", "http://evil.example"),
                "JSON from elsewhere": await login("application/json", "http://evil.example"),
                "JSON from another port": await login("application/json", "http://127.0.0.1:1"),
                "JSON from https": await login("application/json", f"https://127.0.0.1:{port}"),
                "JSON from null": await login("application/json", "null"),
                "text/plain, same origin": await login("text/plain", f"http://127.0.0.1:{port}"),
                "form, no origin": await login("application/x-www-form-urlencoded"),
                "no content type": await login(""),
            }
            accepted = {
                "JSON, same origin, any case": await login(
                    "Application/JSON; charset=utf-8", f"HTTP://127.0.0.1:{port}"
                ),
                "JSON, no origin": await login("application/json"),
                "JSON from localhost": await login(
                    "application/json", f"http://localhost:{port}", host=f"localhost:{port}"
                ),
            }
    assert {name: r.status_code for name, r in refused.items()} == {
        "text/plain from elsewhere": 403,
        "JSON from elsewhere": 403,
        "JSON from another port": 403,
        "JSON from https": 403,
        "JSON from null": 403,
        "text/plain, same origin": 415,
        "form, no origin": 415,
        "no content type": 415,
    }
    assert not [name for name, r in refused.items() if "set-cookie" in r.headers]
    assert {name: r.status_code for name, r in accepted.items()} == dict.fromkeys(accepted, 200)
    assert all("helio_session=" in r.headers["set-cookie"] for r in accepted.values())


async def test_a_cross_site_logout_is_refused_and_the_session_survives() -> None:
    async with mcp_upstream() as upstream, run_proxy(_config(upstream)) as app:
        async with httpx.AsyncClient(base_url=app.dashboard_url) as http:
            assert (await http.post("/api/auth/session", json={"secret": ALICE})).status_code == 200
            foreign = await http.post("/api/auth/logout", json={}, headers={"origin": "http://evil.example"})
            plain = await http.post("/api/auth/logout", content=b"", headers={"content-type": "text/plain"})
            still = await http.get("/api/auth/session")
            own = await http.post("/api/auth/logout", json={}, headers={"origin": app.dashboard_url})
            http.cookies.clear()
            gone = await http.get("/api/auth/session")
    assert (foreign.status_code, plain.status_code) == (403, 415)
    assert "set-cookie" not in foreign.headers
    assert "set-cookie" not in plain.headers
    assert still.json()["data"]["operator"] == "alice"
    assert own.status_code == 200
    assert gone.status_code == 401


async def test_behind_a_trusted_tls_proxy_the_https_origin_is_the_dashboards_own() -> None:
    async with mcp_upstream() as upstream:
        trusted = _config(upstream).replace(
            "  sse_heartbeat_interval: 1s\n",
            "  sse_heartbeat_interval: 1s\n  trusted_proxies: ['127.0.0.1']\n",
        )
        answers: dict[str, int] = {}
        for name, text in (("trusted", trusted), ("untrusted", _config(upstream))):
            async with run_proxy(text) as app, httpx.AsyncClient(base_url=app.dashboard_url) as http:
                port = int(app.dashboard_url.rsplit(":", 1)[1])
                answer = await http.post(
                    "/api/auth/session",
                    json={"secret": ALICE},
                    headers={"origin": f"https://127.0.0.1:{port}", "x-forwarded-proto": "https"},
                )
                answers[name] = answer.status_code
                if answer.status_code == 200:
                    assert "Secure" in answer.headers["set-cookie"]
    assert answers == {"trusted": 200, "untrusted": 403}


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


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "same"),
    [
        ("http://127.0.0.1:3100", "http", "127.0.0.1:3100", True),
        ("HTTP://LocalHost:3100", "http", "localhost:3100", True),
        ("http://dash.example", "http", "dash.example:80", True),
        ("https://dash.example:443", "https", "dash.example", True),
        ("http://[::1]:3100", "http", "[::1]:3100", True),
        ("http://127.0.0.1:3100/", "http", "127.0.0.1:3100", True),
        ("http://127.0.0.1:3101", "http", "127.0.0.1:3100", False),
        ("https://127.0.0.1:3100", "http", "127.0.0.1:3100", False),
        ("http://127.0.0.1", "http", "127.0.0.1:3100", False),
        ("http://evil.example@127.0.0.1:3100", "http", "127.0.0.1:3100", False),
        ("http://127.0.0.1:3100/path", "http", "127.0.0.1:3100", False),
        ("http://127.0.0.1:99999", "http", "127.0.0.1:3100", False),
        ("null", "http", "127.0.0.1:3100", False),
        ("file://", "http", "127.0.0.1:3100", False),
        ("http://127.0.0.1:3100", "http", "", False),
    ],
)
def test_same_origin_means_scheme_host_and_port_of_the_request_with_default_ports_implied(
    origin: str, scheme: str, host: str, same: bool
) -> None:
    assert same_origin(origin, scheme, host) is same
