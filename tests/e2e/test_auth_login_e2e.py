"""``helio auth login UPSTREAM`` as a user runs it: the real command in its own process, against a
loopback authorization server of the test's own (authorization code with PKCE), the test playing
the browser; then a real ``helio start`` reaches the upstream with the access token it refreshes
from the stored refresh token (issue 21 point 4)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import stat
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from cryptography.fernet import Fernet
from mcp import Client
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from helio_proxy.dataplane.oauth import TokenStore
from tests.e2e.conftest import free_port
from tests.harness import audit_records, serve_asgi

pytestmark = pytest.mark.e2e

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CLIENT_ID = "helio-cli"


@dataclass
class AuthorizationServer:
    """Authorization code with PKCE (S256) and rotating refresh tokens; it remembers what it saw."""

    pending: dict[str, tuple[str, str]] = field(default_factory=dict[str, tuple[str, str]])
    """code -> (code_challenge, redirect_uri)."""
    authorize_queries: list[dict[str, str]] = field(default_factory=list[dict[str, str]])
    forms: list[dict[str, str]] = field(default_factory=list[dict[str, str]])
    refresh_tokens: set[str] = field(default_factory=set[str])
    access_tokens: list[str] = field(default_factory=list[str])

    def app(self) -> Starlette:
        async def authorize(request: Request) -> RedirectResponse | JSONResponse:
            query = dict(request.query_params)
            self.authorize_queries.append(query)
            redirect = urlparse(query["redirect_uri"])
            if (
                query.get("response_type") != "code"
                or query.get("client_id") != CLIENT_ID
                or query.get("code_challenge_method") != "S256"
                or redirect.hostname != "127.0.0.1"
            ):
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            code = f"code-{len(self.pending) + 1}"
            self.pending[code] = (query["code_challenge"], query["redirect_uri"])
            target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
            return RedirectResponse(target, status_code=302)

        async def token(request: Request) -> JSONResponse:
            form = {k: str(v) for k, v in (await request.form()).items()}
            self.forms.append(form)
            if form.get("client_id") != CLIENT_ID:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if form["grant_type"] == "authorization_code":
                challenge, redirect_uri = self.pending.pop(form.get("code", ""), ("", ""))
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                verified = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                if not challenge or verified != challenge or form.get("redirect_uri") != redirect_uri:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
            elif form["grant_type"] == "refresh_token":
                if form.get("refresh_token") not in self.refresh_tokens:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                self.refresh_tokens.discard(form["refresh_token"])
            else:
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            number = len(self.access_tokens) + 1
            self.access_tokens.append(f"at-{number}")
            self.refresh_tokens.add(f"rt-{number}")
            return JSONResponse(
                {
                    "access_token": f"at-{number}",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "refresh_token": f"rt-{number}",
                }
            )

        return Starlette(routes=[Route("/authorize", authorize), Route("/token", token, methods=["POST"])])


class BearerOnly:
    """ASGI wrapper: the MCP upstream answers only the authorization server's latest access token."""

    def __init__(self, app: Any, server: AuthorizationServer) -> None:
        self.app = app
        self.server = server
        self.seen: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw: list[tuple[bytes, bytes]] = scope["headers"]
            authorization = {k.decode().lower(): v.decode() for k, v in raw}.get("authorization")
            self.seen.append(authorization)
            tokens = self.server.access_tokens
            if not tokens or authorization != f"Bearer {tokens[-1]}":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


def build_upstream() -> MCPServer:
    server = MCPServer("oauth-upstream")

    @server.tool()
    def whoami() -> str:
        """Who the upstream thinks is calling."""
        return "the proxy, with a token the agent never saw"

    return server


def helio_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "helio_proxy", *args]


@contextlib.asynccontextmanager
async def process(args: list[str], env: dict[str, str]) -> AsyncGenerator[asyncio.subprocess.Process]:
    """A real process whose stdout (with stderr) the test reads; SIGTERM and reap it afterwards."""
    child = await asyncio.create_subprocess_exec(
        *args,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await child.wait()
            except TimeoutError:
                child.kill()
                await child.wait()


async def wait_for_port(port: int, child: asyncio.subprocess.Process) -> None:
    """Poll without blocking the loop (the upstream and the authorization server run in it)."""
    async with asyncio.timeout(30):
        while True:
            if child.returncode is not None:
                assert child.stdout is not None
                output = (await child.stdout.read()).decode()
                raise AssertionError(f"helio start exited with {child.returncode}:\n{output}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                return
            await asyncio.sleep(0.05)


async def test_helio_auth_login_stores_an_encrypted_refresh_token_that_helio_start_calls_with(
    tmp_path: Path,
) -> None:
    auth = AuthorizationServer()
    key = Fernet.generate_key().decode()
    store = tmp_path / "tokens.json"
    audit = tmp_path / "audit.db"
    port = free_port()
    upstream = BearerOnly(build_upstream().streamable_http_app(json_response=True), auth)
    async with serve_asgi(auth.app()) as auth_base, serve_asgi(upstream) as upstream_base:
        config = tmp_path / "helio.yaml"
        config.write_text(
            "version: '1'\n"
            "upstreams:\n"
            "  - name: github\n"
            f"    url: '{upstream_base}/mcp'\n"
            "    credentials:\n"
            "      type: oauth2_authorization_code\n"
            "      name: github-oauth\n"
            f"      authorization_url: '{auth_base}/authorize'\n"
            f"      token_url: '{auth_base}/token'\n"
            f"      client_id: {CLIENT_ID}\n"
            "      scope: 'repo:read'\n"
            f"      token_store: '{store}'\n"
            f"listen: {{port: {port}}}\n"
            f"audit: {{path: '{audit}'}}\n"
            "dashboard: {enabled: false}\n"
        )
        env = {"HELIO_TOKEN_KEY": key}

        # 1. The real command: it prints the authorization URL and listens for the redirect.
        login = helio_command("auth", "login", "github", "-c", str(config), "--no-browser")
        async with asyncio.timeout(60), process(login, env) as child:
            assert child.stdout is not None
            printed: list[str] = []
            url: str | None = None
            while url is None:
                line = (await child.stdout.readline()).decode()
                assert line, f"helio auth login ended without a URL:\n{''.join(printed)}"
                printed.append(line)
                if line.startswith(f"{auth_base}/authorize?"):
                    url = line.strip()
            # 2. The browser: follow the authorization URL to the command's loopback callback.
            async with httpx.AsyncClient(follow_redirects=True, timeout=10) as browser:
                landed = await browser.get(url)
            assert landed.status_code == 200
            assert "authorized" in landed.text
            rest = (await child.stdout.read()).decode()
            assert await child.wait() == 0, "".join(printed) + rest

        query = parse_qs(urlparse(url).query)
        assert query["scope"] == ["repo:read"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/callback", query["redirect_uri"][0])
        assert auth.forms[0]["grant_type"] == "authorization_code"
        assert f"refresh token for github-oauth is stored encrypted in {store}" in rest
        # 3. The refresh token is on disk, 0600 and encrypted with the key from the environment.
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
        assert b"rt-1" not in store.read_bytes()
        assert TokenStore(store, key.encode()).get("github") == "rt-1"

        # 4. A later proxy process refreshes with it and calls the upstream with the access token.
        start = helio_command("start", "-c", str(config))
        async with asyncio.timeout(60), process(start, env) as proxy:
            await wait_for_port(port, proxy)
            async with Client(f"http://127.0.0.1:{port}/mcp/github") as agent:
                result = await agent.call_tool("whoami", {})
            proxy.send_signal(signal.SIGTERM)
            await proxy.wait()

    assert result.is_error is False
    assert auth.forms[-1]["grant_type"] == "refresh_token"
    assert auth.forms[-1]["refresh_token"] == "rt-1"
    assert "Bearer at-2" in upstream.seen  # the access token refreshed from the stored one
    assert TokenStore(store, key.encode()).get("github") == "rt-2"  # rotated, still encrypted
    (record,) = audit_records(audit, tool="whoami")
    assert record["metadata"]["data_plane"]["credential"] == "github-oauth"
    assert "at-2" not in json.dumps(record)
