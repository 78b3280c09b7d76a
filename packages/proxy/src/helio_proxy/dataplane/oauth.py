"""An OAuth 2.1 client for upstreams that require one: client credentials, and authorization
code with PKCE (``helio auth login UPSTREAM``).

Access tokens are kept in memory and refreshed :attr:`CredentialsConfig.refresh_before` ahead of
their expiry; one refresh runs at a time. Refresh tokens of the authorization-code flow live in a
:class:`TokenStore`: a 0600 file encrypted with a Fernet key from the environment. When no refresh
token is stored, or the server refuses it, calls fail with ``failure_reason: consent_required``
and a message naming the ``helio auth login`` command to run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import httpx
from cryptography.fernet import Fernet, InvalidToken

from helio_proxy.config.data_plane import CredentialsConfig
from helio_proxy.dataplane.credentials import CredentialMissing, read_secret

TOKEN_REQUEST_TIMEOUT: Final = 10.0
"""Longest a token request to the authorization server may take (seconds)."""

DEFAULT_LIFETIME: Final = 300.0
"""Lifetime assumed for an access token answered without ``expires_in`` (seconds)."""


class ConsentRequired(CredentialMissing):
    """No usable refresh token: an operator must run ``helio auth login UPSTREAM`` again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, failure_reason="consent_required")


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_at: float


class TokenStore:
    """Refresh tokens by upstream, encrypted at rest (Fernet) in a 0600 file."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise CredentialMissing(
                "the token store key is not a Fernet key (32 url-safe base64 bytes)"
            ) from exc

    @classmethod
    def from_config(cls, config: CredentialsConfig, environ: Mapping[str, str]) -> TokenStore:
        key = environ.get(config.token_key_env)
        if not key:
            raise CredentialMissing(
                f"environment variable {config.token_key_env} (the token store key) is not set; "
                "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            )
        return cls(Path(config.token_store), key.encode())

    def _load(self) -> dict[str, str]:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            return cast(dict[str, str], json.loads(self._fernet.decrypt(blob)))
        except InvalidToken as exc:
            raise CredentialMissing(f"{self.path}: cannot be decrypted with the configured key") from exc

    def get(self, upstream: str) -> str | None:
        return self._load().get(upstream)

    def put(self, upstream: str, refresh_token: str | None) -> None:
        tokens = self._load()
        if refresh_token is None:
            tokens.pop(upstream, None)
        else:
            tokens[upstream] = refresh_token
        _write_private(self.path, self._fernet.encrypt(json.dumps(tokens).encode()))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new 0600 file beside ``path`` and rename it over ``path``."""
    fd, temporary = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``code_verifier`` and its S256 ``code_challenge`` (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class OAuthCredential:
    """Bearer tokens from an OAuth 2.1 authorization server, refreshed before they expire."""

    def __init__(
        self,
        config: CredentialsConfig,
        name: str,
        environ: Mapping[str, str],
        *,
        upstream: str,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.upstream = upstream
        self._environ = environ
        self._clock = clock
        self._transport = transport
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        """Token requests made (tests and metrics)."""

    async def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {(await self.token()).value}"}

    def environment(self) -> dict[str, str]:
        return {}

    def _fresh(self) -> AccessToken | None:
        token = self._token
        if token is not None and token.expires_at - float(self.config.refresh_before.seconds) > self._clock():
            return token
        return None

    async def token(self) -> AccessToken:
        """A valid access token, obtained or refreshed when needed."""
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        async with self._lock:
            fresh = self._fresh()
            if fresh is not None:
                return fresh
            self._token = await self._obtain()
            return self._token

    def _client_auth(self) -> dict[str, str]:
        form = {"client_id": self.config.client_id or ""}
        if self.config.client_secret_env or self.config.client_secret_file:
            form["client_secret"] = read_secret(
                self._environ,
                env=self.config.client_secret_env,
                file=self.config.client_secret_file,
                what=f"credential {self.name} client secret",
            )
        return form

    def _extras(self) -> dict[str, str]:
        extras: dict[str, str] = {}
        if self.config.scope:
            extras["scope"] = self.config.scope
        if self.config.resource:
            extras["resource"] = self.config.resource
        return extras

    async def _obtain(self) -> AccessToken:
        if self.config.type == "oauth2_client_credentials":
            form = {"grant_type": "client_credentials", **self._client_auth(), **self._extras()}
            answer = await self._token_request(form)
            return self._access(answer)
        store = TokenStore.from_config(self.config, self._environ)
        refresh = await asyncio.to_thread(store.get, self.upstream)
        if refresh is None:
            raise ConsentRequired(self._consent_message("no refresh token is stored"))
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            **self._client_auth(),
            **self._extras(),
        }
        try:
            answer = await self._token_request(form)
        except ConsentRequired:
            await asyncio.to_thread(store.put, self.upstream, None)
            raise
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated != refresh:
            await asyncio.to_thread(store.put, self.upstream, rotated)
        return self._access(answer)

    def _consent_message(self, why: str) -> str:
        return f"credential {self.name}: {why}; run: helio auth login {self.upstream or '<upstream>'}"

    def _access(self, answer: dict[str, Any]) -> AccessToken:
        value = answer.get("access_token")
        if not isinstance(value, str) or not value:
            raise CredentialMissing(f"credential {self.name}: the token endpoint answered no access_token")
        lifetime = answer.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, (int, float)) and lifetime > 0 else DEFAULT_LIFETIME
        return AccessToken(value, self._clock() + seconds)

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        assert self.config.token_url is not None
        self.fetches += 1
        try:
            async with httpx.AsyncClient(timeout=TOKEN_REQUEST_TIMEOUT, transport=self._transport) as http:
                response = await http.post(
                    self.config.token_url, data=form, headers={"accept": "application/json"}
                )
        except httpx.HTTPError as exc:
            raise CredentialMissing(
                f"credential {self.name}: token endpoint unreachable ({type(exc).__name__})"
            ) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise CredentialMissing(
                f"credential {self.name}: token endpoint answered HTTP {response.status_code}"
            )
        body = cast(dict[str, Any], answer)
        if response.status_code >= 400:
            error = str(body.get("error", "error"))
            if error == "invalid_grant" and form.get("grant_type") == "refresh_token":
                raise ConsentRequired(
                    self._consent_message("the authorization server refused the refresh token")
                )
            raise CredentialMissing(f"credential {self.name}: token endpoint refused: {error}")
        return body

    async def exchange_code(self, code: str, verifier: str, redirect_uri: str) -> None:
        """Finish ``helio auth login``: trade the code for tokens; store the refresh token."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
            **self._client_auth(),
            **({"resource": self.config.resource} if self.config.resource else {}),
        }
        answer = await self._token_request(form)
        self._token = self._access(answer)
        refresh = answer.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise CredentialMissing(
                f"credential {self.name}: the authorization server issued no refresh token"
            )
        store = TokenStore.from_config(self.config, self._environ)
        await asyncio.to_thread(store.put, self.upstream, refresh)
