"""Agent authentication on the MCP port (``listen.auth``): who is calling, before anything else.

Two kinds of bearer token are accepted, in this order:

* a **static token** of ``listen.auth.tokens``: the SHA-256 of the presented token is compared,
  with :func:`hmac.compare_digest`, against every configured ``token_hash`` (all of them, so the
  time taken does not say which entry came close);
* a **JWT access token** of an issuer in ``listen.auth.jwt`` (OAuth 2.1 resource server, as the MCP
  authorization specification describes): the header's ``alg`` must be one the issuer allows
  (asymmetric only, so ``none`` and an ``HS256`` token "signed" with the public key never get as
  far as a key), the ``iss`` claim selects the issuer, the key named by ``kid`` comes from the
  issuer's JWKS (fetched with PyJWT's :class:`jwt.PyJWKClient` in a worker thread, never on the
  event loop, and cached: refreshed every :data:`KEYS_TTL_SECONDS`, and at most once every
  :data:`REFETCH_MIN_SECONDS` when a token names a key not seen yet), then signature, ``exp``
  (required), ``nbf``, ``iat``, issuer and audience (by default the resource URL of the endpoint
  called) are checked with the issuer's leeway, then the required scopes; the agent id is the
  configured claim.

A request without a token, or with one that fails, is answered ``401`` with
``WWW-Authenticate: Bearer resource_metadata="<url>"`` (and ``error="invalid_token"`` when a token
was given); a valid token that lacks a required scope gets ``403`` with
``error="insufficient_scope"``. :func:`protected_resource_metadata` is the RFC 9728 document that
``resource_metadata`` points at.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import jwt
from jwt import PyJWK, PyJWKClient

from helio_proxy.config.sections import AgentAuthConfig, JwtIssuer, ListenConfig
from helio_proxy.guards import is_loopback

log = logging.getLogger("helio_proxy.transports.agent_auth")

METADATA_PATH: Final = "/.well-known/oauth-protected-resource"
"""RFC 9728 protected-resource metadata; per endpoint at ``METADATA_PATH + <endpoint path>``."""

KEYS_TTL_SECONDS: Final = 300.0
"""How long an issuer's fetched JWKS is used before it is fetched again."""

REFETCH_MIN_SECONDS: Final = 30.0
"""A token naming an unknown ``kid`` makes the JWKS be fetched again at most this often (so junk
tokens cannot turn the proxy into a flood of requests to the issuer)."""

FETCH_TIMEOUT_SECONDS: Final = 5
"""Timeout of one JWKS fetch."""

MAX_TOKEN_LENGTH: Final = 16_384
"""Longer bearer tokens are refused without being parsed."""

MAX_AGENT_ID_LENGTH: Final = 256


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """An authenticated agent."""

    agent_id: str
    method: Literal["token", "jwt"]
    issuer: str | None = None
    """The JWT's issuer (``None`` for a static token)."""


class AuthFailure(Exception):
    """The request is not authenticated; ``str(self)`` is the ``error_description``."""

    def __init__(self, description: str, *, token_given: bool, insufficient_scope: str | None = None) -> None:
        super().__init__(description)
        self.token_given = token_given
        self.insufficient_scope = insufficient_scope
        """The scopes required (space-separated) when the token lacked some: HTTP 403."""

    @property
    def status(self) -> int:
        return 403 if self.insufficient_scope is not None else 401

    def www_authenticate(self, metadata_url: str) -> str:
        """The ``WWW-Authenticate`` header value (RFC 6750 §3, RFC 9728 §5.1)."""
        parts = [f'Bearer resource_metadata="{metadata_url}"']
        if self.insufficient_scope is not None:
            parts.append('error="insufficient_scope"')
            parts.append(f'scope="{_quotable(self.insufficient_scope)}"')
        elif self.token_given:
            parts.append('error="invalid_token"')
        if self.token_given:
            parts.append(f'error_description="{_quotable(str(self))}"')
        return ", ".join(parts)


def _quotable(text: str) -> str:
    return "".join(c for c in text if c >= " " and c not in '"\\\x7f')[:200]


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (``None`` when absent or another scheme)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


class IssuerKeys:
    """One issuer's signing keys, fetched off the event loop and cached."""

    def __init__(self, issuer: JwtIssuer, clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer
        self._client = PyJWKClient(
            issuer.jwks_url, cache_keys=False, cache_jwk_set=False, timeout=FETCH_TIMEOUT_SECONDS
        )
        self._keys: dict[str | None, PyJWK] = {}
        self._fetched_at = -math.inf
        self._lock = asyncio.Lock()
        self._clock = clock
        self.fetches = 0
        """JWKS fetches so far (tests check the cache with it)."""

    async def key(self, kid: str | None) -> PyJWK | None:
        """The signing key ``kid`` names (the only key, when the token names none and there is one)."""
        age = self._clock() - self._fetched_at
        if age > KEYS_TTL_SECONDS or (kid not in self._keys and age > REFETCH_MIN_SECONDS):
            async with self._lock:
                age = self._clock() - self._fetched_at
                if age > KEYS_TTL_SECONDS or (kid not in self._keys and age > REFETCH_MIN_SECONDS):
                    await self._refresh()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        self._fetched_at = self._clock()
        self.fetches += 1
        try:
            keys = await asyncio.to_thread(self._client.get_signing_keys, True)
        except (jwt.PyJWKClientError, jwt.exceptions.PyJWKError) as exc:
            # The keys seen last stay in use; without any, every token of this issuer is refused.
            log.warning("could not fetch the signing keys of %s: %s", self.issuer.issuer, exc)
            return
        self._keys = {key.key_id: key for key in keys}


class AgentAuthenticator:
    """Checks the bearer token of every agent-facing request against ``listen.auth``."""

    def __init__(self, config: AgentAuthConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._tokens = [
            (bytes.fromhex(token.token_hash.removeprefix("sha256:")), token.agent_id)
            for token in config.tokens
        ]
        self.issuers = {issuer.issuer: IssuerKeys(issuer, clock) for issuer in config.jwt}

    async def authenticate(self, authorization: str | None, resources: list[str]) -> AgentIdentity:
        """The agent behind ``authorization`` (raises :class:`AuthFailure`).

        ``resources``: the URLs a JWT's audience may name when its issuer sets no ``audience``
        (the endpoint's resource URL first, then the listener's base URL)."""
        token = bearer_token(authorization)
        if token is None:
            described = "a bearer token is required" if authorization is None else "use Authorization: Bearer"
            raise AuthFailure(described, token_given=False)
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthFailure("the token is too long", token_given=True)
        agent = self._static(token)
        if agent is not None:
            return AgentIdentity(agent, "token")
        if self.issuers and token.count(".") == 2:
            return await self._jwt(token, resources)
        raise AuthFailure("the token is not valid", token_given=True)

    def _static(self, token: str) -> str | None:
        digest = hashlib.sha256(token.encode()).digest()
        found: str | None = None
        for expected, agent in self._tokens:  # every entry, so the timing tells nothing
            if hmac.compare_digest(expected, digest):
                found = agent
        return found

    async def _jwt(self, token: str, resources: list[str]) -> AgentIdentity:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthFailure("the token is not a valid JWT", token_given=True) from None
        issuer_name = unverified.get("iss")
        keys = self.issuers.get(issuer_name) if isinstance(issuer_name, str) else None
        if keys is None:
            raise AuthFailure("the token's issuer is not trusted", token_given=True)
        issuer = keys.issuer
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in issuer.algorithms:
            raise AuthFailure(f"the token's algorithm {algorithm!r} is not accepted", token_given=True)
        kid = header.get("kid")
        key = await keys.key(kid if isinstance(kid, str) else None)
        if key is None:
            raise AuthFailure("the token's signing key (kid) is not known", token_given=True)
        audience = issuer.audience or resources
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer.issuer,
                leeway=issuer.leeway.seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure("the token has expired", token_given=True) from None
        except jwt.InvalidAudienceError:
            raise AuthFailure(f"the token's audience is not {audience[0]}", token_given=True) from None
        except jwt.ImmatureSignatureError:
            raise AuthFailure("the token is not valid yet", token_given=True) from None
        except jwt.PyJWTError as exc:
            raise AuthFailure(f"the token is not valid ({type(exc).__name__})", token_given=True) from None
        agent = claims.get(issuer.agent_claim)
        if not isinstance(agent, str) or not agent.strip() or len(agent) > MAX_AGENT_ID_LENGTH:
            raise AuthFailure(f"the token has no usable {issuer.agent_claim!r} claim", token_given=True)
        missing = [scope for scope in issuer.required_scopes if scope not in _scopes(claims)]
        if missing:
            raise AuthFailure(
                "the token lacks scope " + " ".join(missing),
                token_given=True,
                insufficient_scope=" ".join(issuer.required_scopes),
            )
        return AgentIdentity(agent, "jwt", issuer.issuer)


def _scopes(claims: Mapping[str, Any]) -> set[str]:
    scope = claims.get("scope")
    found: set[str] = set(scope.split()) if isinstance(scope, str) else set()
    scp = claims.get("scp")
    if isinstance(scp, list):
        found.update(item for item in cast(list[Any], scp) if isinstance(item, str))
    elif isinstance(scp, str):
        found.update(scp.split())
    return found


def protected_resource_metadata(config: AgentAuthConfig, resource: str) -> dict[str, Any]:
    """The RFC 9728 document for ``resource``."""
    servers = config.authorization_servers
    if servers is None:
        servers = [issuer.issuer for issuer in config.jwt]
    scopes = config.scopes_supported
    if scopes is None:
        scopes = sorted({scope for issuer in config.jwt for scope in issuer.required_scopes})
    return {
        "resource": resource,
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "scopes_supported": scopes,
    }


def unauthenticated_exposure(listen: ListenConfig) -> str | None:
    """Why ``helio start`` refuses this listener: bound beyond loopback with no ``listen.auth``
    (``None`` when it may start)."""
    if listen.auth is not None or listen.allow_unauthenticated or is_loopback(listen.host):
        return None
    return (
        f"listen.host is {listen.host!r} (reachable beyond this machine) but agents are not "
        "authenticated: anyone who can reach the port could call every tool. Add listen.auth "
        "(static tokens or OAuth JWTs, see docs/agent-auth.md), bind listen.host to 127.0.0.1, or, "
        "if something in front already authenticates agents, set listen.allow_unauthenticated: true"
    )
