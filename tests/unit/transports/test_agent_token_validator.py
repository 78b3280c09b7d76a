"""The agent-token validator (:mod:`helio_proxy.transports.downstream.agent_auth`) without a proxy:
static tokens, bearer parsing, JWT checks against keys handed in directly, the key cache, the
``WWW-Authenticate`` challenge, the RFC 9728 document, and the start-up refusal."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from jwt import PyJWK
from pydantic import ValidationError

from helio_proxy.config.sections import AgentAuthConfig, ListenConfig
from helio_proxy.transports.downstream.agent_auth import (
    REFETCH_MIN_SECONDS,
    AgentAuthenticator,
    AuthFailure,
    bearer_token,
    protected_resource_metadata,
    unauthenticated_exposure,
)
from tests.issuer import ISSUER, TestIssuer

RESOURCE = "http://127.0.0.1:3000/mcp"


def _hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer()


def _authenticator(issuer: TestIssuer, clock: Clock | None = None, **jwt: Any) -> AgentAuthenticator:
    config = AgentAuthConfig.model_validate(
        {
            "tokens": [{"agent_id": "alice", "token_hash": _hash("alice-token")}],
            "jwt": [{"issuer": ISSUER, "jwks_url": "http://127.0.0.1:9/jwks", **jwt}],
        }
    )
    authenticator = AgentAuthenticator(config, clock or Clock())
    keys = authenticator.issuers[ISSUER]
    fetched = [PyJWK(key) for key in issuer.jwks()["keys"]]

    def get_signing_keys(refresh: bool = False) -> list[PyJWK]:
        return fetched

    keys._client.get_signing_keys = get_signing_keys  # type: ignore[method-assign]
    return authenticator


def test_bearer_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


async def test_static_tokens_by_hash(issuer: TestIssuer) -> None:
    auth = _authenticator(issuer)
    assert (await auth.authenticate("Bearer alice-token", [RESOURCE])).agent_id == "alice"
    with pytest.raises(AuthFailure) as wrong:
        await auth.authenticate("Bearer alice-token2", [RESOURCE])
    assert wrong.value.token_given
    with pytest.raises(AuthFailure) as missing:
        await auth.authenticate(None, [RESOURCE])
    assert not missing.value.token_given
    assert missing.value.www_authenticate("http://m") == 'Bearer resource_metadata="http://m"'


async def test_a_valid_jwt_gives_its_subject(issuer: TestIssuer) -> None:
    auth = _authenticator(issuer, required_scopes=["mcp:tools"])
    identity = await auth.authenticate(f"Bearer {issuer.token(RESOURCE, sub='bot-7')}", [RESOURCE])
    assert (identity.agent_id, identity.method, identity.issuer) == ("bot-7", "jwt", ISSUER)
    ec = await auth.authenticate(f"Bearer {issuer.token(RESOURCE, alg='ES256', sub='bot-8')}", [RESOURCE])
    assert ec.agent_id == "bot-8"


async def test_agent_claim_audience_list_and_leeway(issuer: TestIssuer) -> None:
    auth = _authenticator(issuer, agent_claim="client_id", audience=["api://helio"], leeway="60s")
    token = issuer.token("api://helio", client_id="svc-1", exp=int(issuer.claims("")["iat"]) - 30)
    assert (await auth.authenticate(f"Bearer {token}", [RESOURCE])).agent_id == "svc-1"
    with pytest.raises(AuthFailure, match="audience"):
        await auth.authenticate(f"Bearer {issuer.token(RESOURCE)}", [RESOURCE])
    with pytest.raises(AuthFailure, match="no usable 'client_id'"):
        await auth.authenticate(f"Bearer {issuer.token('api://helio')}", [RESOURCE])


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("expired", "expired"),
        ("not yet valid", "not valid yet"),
        ("no exp", "not valid"),
        ("wrong audience", "audience"),
        ("wrong issuer", "issuer is not trusted"),
        ("alg none", "algorithm 'none'"),
        ("hs256 public key", "algorithm 'HS256'"),
        ("unknown kid", "kid"),
        ("tampered", "not valid"),
        ("garbage", "not a valid JWT"),
    ],
)
async def test_bad_jwts_are_refused(issuer: TestIssuer, case: str, why: str) -> None:
    tokens = {
        "expired": lambda: issuer.token(RESOURCE, exp=1_000_000_000),
        "not yet valid": lambda: issuer.token(RESOURCE, nbf=4_000_000_000),
        "no exp": lambda: issuer.token(RESOURCE, exp=None),
        "wrong audience": lambda: issuer.token("http://elsewhere/mcp"),
        "wrong issuer": lambda: issuer.token(RESOURCE, iss="https://other"),
        "alg none": lambda: issuer.unsigned(RESOURCE),
        "hs256 public key": lambda: issuer.hs256_with_public_key(RESOURCE),
        "unknown kid": lambda: issuer.token(RESOURCE, kid="nope"),
        "tampered": lambda: issuer.token(RESOURCE)[:-6] + "AAAAAA",
        "garbage": lambda: "a.b.c",
    }
    with pytest.raises(AuthFailure, match=why) as refused:
        await _authenticator(issuer).authenticate(f"Bearer {tokens[case]()}", [RESOURCE])
    assert refused.value.status == 401
    assert 'error="invalid_token"' in refused.value.www_authenticate("http://m")


async def test_a_missing_scope_is_403_insufficient_scope(issuer: TestIssuer) -> None:
    auth = _authenticator(issuer, required_scopes=["mcp:tools", "mcp:admin"])
    with pytest.raises(AuthFailure) as refused:
        await auth.authenticate(f"Bearer {issuer.token(RESOURCE)}", [RESOURCE])
    assert refused.value.status == 403
    challenge = refused.value.www_authenticate("http://m")
    assert 'error="insufficient_scope", scope="mcp:tools mcp:admin"' in challenge
    scp = issuer.token(RESOURCE, scope=None, scp=["mcp:tools", "mcp:admin"])
    assert (await auth.authenticate(f"Bearer {scp}", [RESOURCE])).agent_id == "agent-jwt"


async def test_keys_are_cached_and_unknown_kids_refetch_at_most_every_30s(issuer: TestIssuer) -> None:
    clock = Clock()
    auth = _authenticator(issuer, clock)
    keys = auth.issuers[ISSUER]
    for _ in range(3):
        await auth.authenticate(f"Bearer {issuer.token(RESOURCE)}", [RESOURCE])
    assert keys.fetches == 1
    for _ in range(5):
        with pytest.raises(AuthFailure):
            await auth.authenticate(f"Bearer {issuer.token(RESOURCE, kid='rotated')}", [RESOURCE])
    assert keys.fetches == 1
    clock.now += REFETCH_MIN_SECONDS + 1
    with pytest.raises(AuthFailure):
        await auth.authenticate(f"Bearer {issuer.token(RESOURCE, kid='rotated')}", [RESOURCE])
    assert keys.fetches == 2


def test_metadata_document() -> None:
    config = AgentAuthConfig.model_validate(
        {"jwt": [{"issuer": ISSUER, "jwks_url": "http://x/jwks", "required_scopes": ["b", "a"]}]}
    )
    assert protected_resource_metadata(config, RESOURCE) == {
        "resource": RESOURCE,
        "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["a", "b"],
    }


@pytest.mark.parametrize("algorithm", ["none", "HS256", "HS512"])
def test_symmetric_and_none_algorithms_are_refused_in_config(algorithm: str) -> None:
    with pytest.raises(ValidationError, match="asymmetric"):
        AgentAuthConfig.model_validate(
            {"jwt": [{"issuer": ISSUER, "jwks_url": "http://x/jwks", "algorithms": [algorithm]}]}
        )


def test_config_shape_rules() -> None:
    with pytest.raises(ValidationError, match="needs 'tokens' or 'jwt'"):
        AgentAuthConfig.model_validate({})
    with pytest.raises(ValidationError, match="share a hash"):
        AgentAuthConfig.model_validate(
            {"tokens": [{"agent_id": a, "token_hash": _hash("same")} for a in ("a", "b")]}
        )
    jwt_only = {"jwt": [{"issuer": ISSUER, "jwks_url": "http://x/jwks"}]}
    with pytest.raises(ValidationError, match="public_url"):
        ListenConfig.model_validate({"host": "0.0.0.0", "auth": jwt_only})
    ListenConfig.model_validate(
        {"host": "0.0.0.0", "auth": {**jwt_only, "public_url": "https://mcp.example"}}
    )


def test_start_refuses_an_unauthenticated_non_loopback_bind() -> None:
    assert unauthenticated_exposure(ListenConfig()) is None
    refused = unauthenticated_exposure(ListenConfig(host="0.0.0.0"))
    assert refused is not None
    assert "listen.auth" in refused
    assert "allow_unauthenticated" in refused
    assert unauthenticated_exposure(ListenConfig(host="0.0.0.0", allow_unauthenticated=True)) is None
    tokens = {"tokens": [{"agent_id": "a", "token_hash": _hash("t")}]}
    assert unauthenticated_exposure(ListenConfig.model_validate({"host": "10.1.2.3", "auth": tokens})) is None


def test_the_agent_key_warning_is_only_given_without_agent_authentication() -> None:
    from helio_proxy.config import parse_config_text
    from helio_proxy.limits.charges import fallback_warnings

    text = (
        "version: '1'\nupstream: {url: 'http://127.0.0.1:9/mcp'}\ndashboard: {enabled: false}\n"
        "policies:\n  rules:\n    - match: {tool: a}\n      action: rate_limit\n"
        "      limits: {max_calls: 1, window: 1m, key: agent}\n"
    )
    assert any("counts per session" in w for w in fallback_warnings(parse_config_text(text)))
    tokens = f"listen:\n  auth:\n    tokens: [{{agent_id: a, token_hash: '{_hash('t')}'}}]\n"
    assert fallback_warnings(parse_config_text(text + tokens)) == []


async def test_a_pair_from_helio_secret_fits_token_hash() -> None:
    from helio_proxy.cli.secret import fresh_secret

    pair = fresh_secret()
    assert pair.secret is not None
    config = AgentAuthConfig.model_validate({"tokens": [{"agent_id": "ci", "token_hash": pair.hash}]})
    identity = await AgentAuthenticator(config).authenticate(f"Bearer {pair.secret}", [RESOURCE])
    assert identity.agent_id == "ci"
