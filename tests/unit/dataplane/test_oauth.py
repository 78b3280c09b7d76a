"""The OAuth 2.1 client: authorization code with PKCE on a loopback redirect, refresh tokens
encrypted at rest, refresh before expiry, and a clear error when consent is needed again."""

from __future__ import annotations

import base64
import hashlib
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from cryptography.fernet import Fernet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from helio_proxy.config.data_plane import CredentialsConfig
from helio_proxy.dataplane.credentials import CredentialMissing
from helio_proxy.dataplane.login import login
from helio_proxy.dataplane.oauth import ConsentRequired, OAuthCredential, TokenStore
from tests.harness import serve_asgi


@dataclass
class AuthorizationServer:
    challenges: dict[str, str] = field(default_factory=dict[str, str])
    forms: list[dict[str, str]] = field(default_factory=list[dict[str, str]])
    refresh_tokens: set[str] = field(default_factory=set[str])
    issued: int = 0

    def app(self) -> Starlette:
        async def authorize(request: Request) -> RedirectResponse:
            query = request.query_params
            assert query["code_challenge_method"] == "S256"
            code = f"code-{len(self.challenges) + 1}"
            self.challenges[code] = query["code_challenge"]
            target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
            return RedirectResponse(target, status_code=302)

        async def token(request: Request) -> JSONResponse:
            form = {k: str(v) for k, v in (await request.form()).items()}
            self.forms.append(form)
            if form["grant_type"] == "authorization_code":
                digest = hashlib.sha256(form["code_verifier"].encode()).digest()
                if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != self.challenges.get(
                    form["code"]
                ):
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
            elif form["grant_type"] == "refresh_token":
                if form["refresh_token"] not in self.refresh_tokens:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                self.refresh_tokens.discard(form["refresh_token"])
            self.issued += 1
            refresh = f"rt-{self.issued}"
            self.refresh_tokens.add(refresh)
            return JSONResponse(
                {"access_token": f"at-{self.issued}", "expires_in": 3600, "refresh_token": refresh}
            )

        return Starlette(routes=[Route("/authorize", authorize), Route("/token", token, methods=["POST"])])


def credentials(base: str, store: Path) -> CredentialsConfig:
    return CredentialsConfig(
        type="oauth2_authorization_code",
        authorization_url=f"{base}/authorize",
        token_url=f"{base}/token",
        client_id="helio-cli",
        scope="tools",
        resource="http://127.0.0.1:9/mcp",
        token_store=str(store),
    )


async def browse(url: str) -> None:
    async with httpx.AsyncClient(follow_redirects=True, timeout=5) as http:
        response = await http.get(url)
        response.raise_for_status()


async def test_login_stores_an_encrypted_refresh_token_that_a_later_process_refreshes_with(
    tmp_path: Path,
) -> None:
    server = AuthorizationServer()
    key = Fernet.generate_key().decode()
    environ = {"HELIO_TOKEN_KEY": key}
    store = tmp_path / "tokens.json"
    shown: list[str] = []
    async with serve_asgi(server.app()) as base:
        config = credentials(base, store)
        first = OAuthCredential(config, "gh", environ, upstream="github")
        await login(first, show=shown.append, browse=browse, wait_seconds=5)
        assert server.forms[-1]["grant_type"] == "authorization_code"
        query = parse_qs(urlparse(shown[0]).query)
        assert query["resource"] == ["http://127.0.0.1:9/mcp"]
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
        assert b"rt-1" not in store.read_bytes()
        assert TokenStore(store, key.encode()).get("github") == "rt-1"

        later = OAuthCredential(config, "gh", environ, upstream="github")
        headers = await later.headers()
    assert headers == {"authorization": "Bearer at-2"}
    assert server.forms[-1]["grant_type"] == "refresh_token"
    assert server.forms[-1]["refresh_token"] == "rt-1"
    assert TokenStore(store, key.encode()).get("github") == "rt-2"  # rotated


async def test_a_refused_refresh_token_asks_for_consent_again(tmp_path: Path) -> None:
    server = AuthorizationServer()
    key = Fernet.generate_key()
    store = tmp_path / "tokens.json"
    TokenStore(store, key).put("github", "revoked")
    async with serve_asgi(server.app()) as base:
        credential = OAuthCredential(
            credentials(base, store), "gh", {"HELIO_TOKEN_KEY": key.decode()}, upstream="github"
        )
        with pytest.raises(ConsentRequired) as caught:
            await credential.headers()
    assert "helio auth login github" in str(caught.value)
    assert caught.value.data["failure_reason"] == "consent_required"
    assert TokenStore(store, key).get("github") is None


async def test_no_stored_token_or_no_key_is_a_clear_error(tmp_path: Path) -> None:
    config = credentials("http://127.0.0.1:9", tmp_path / "tokens.json")
    with pytest.raises(ConsentRequired):
        await OAuthCredential(
            config, "gh", {"HELIO_TOKEN_KEY": Fernet.generate_key().decode()}, upstream="x"
        ).token()
    with pytest.raises(CredentialMissing, match="HELIO_TOKEN_KEY"):
        await OAuthCredential(config, "gh", {}, upstream="x").token()


async def test_client_credentials_are_refreshed_before_expiry() -> None:
    now = [1000.0]
    calls: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = dict(parse_qs(request.content.decode()))
        calls.append({k: v[0] for k, v in form.items()})
        return httpx.Response(200, json={"access_token": f"t{len(calls)}", "expires_in": 120})

    config = CredentialsConfig(
        type="oauth2_client_credentials",
        token_url="http://auth.test/token",
        client_id="c",
        client_secret_env="S",
    )
    credential = OAuthCredential(
        config,
        "svc",
        {"S": "secret"},
        upstream="u",
        clock=lambda: now[0],
        transport=httpx.MockTransport(handler),
    )
    assert (await credential.token()).value == "t1"
    now[0] += 59  # 61 s left: more than the 60 s margin
    assert (await credential.token()).value == "t1"
    now[0] += 2  # 59 s left: refreshed
    assert (await credential.token()).value == "t2"
    assert calls[0] == {"grant_type": "client_credentials", "client_id": "c", "client_secret": "secret"}
