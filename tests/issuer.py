"""A local OAuth issuer for agent-authentication tests: keys made here, a JWKS served on loopback.

:class:`TestIssuer` signs access tokens with an RSA key (``kid: rsa-1``) and an EC P-256 key
(``kid: ec-1``), publishes both public keys at ``/jwks`` (``serve()``), counts JWKS fetches, and
can forge the tokens a resource server must refuse (``alg: none``, HS256 keyed with the public key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.harness import serve_asgi

ISSUER = "https://issuer.helio.test"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TestIssuer:
    __test__ = False  # not a test class

    def __init__(self, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.fetches = 0
        self.url = ""

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(ECAlgorithm.to_jwk(self.ec.public_key()))
        return {
            "keys": [
                {**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
                {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"},
            ]
        }

    def claims(self, audience: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "agent-jwt",
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "scope": "mcp:tools other",
        }
        claims.update(overrides)
        return {key: value for key, value in claims.items() if value is not None}

    def token(self, audience: str, *, alg: str = "RS256", kid: str | None = None, **claims: Any) -> str:
        key = self.rsa if alg.startswith(("RS", "PS")) else self.ec
        kid = kid or ("rsa-1" if key is self.rsa else "ec-1")
        return jwt.encode(self.claims(audience, **claims), key, algorithm=alg, headers={"kid": kid})

    def unsigned(self, audience: str) -> str:
        """``alg: none``: no signature at all."""
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
        return f"{header}.{_b64(json.dumps(self.claims(audience)).encode())}."

    def hs256_with_public_key(self, audience: str) -> str:
        """The key-confusion attack: HS256 with the RSA public key (PEM) as the HMAC secret."""
        secret = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        payload = _b64(json.dumps(self.claims(audience)).encode())
        signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve the JWKS on loopback; yields its URL (also kept as ``self.url``)."""

        async def jwks(_request: Request) -> JSONResponse:
            self.fetches += 1
            return JSONResponse(self.jwks())

        app = Starlette(routes=[Route("/jwks", jwks)])
        async with serve_asgi(app, lifespan="off") as base:
            self.url = f"{base}/jwks"
            yield self.url
