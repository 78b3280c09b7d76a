"""The per-boot sideband token: where it comes from and how a request's bearer is checked."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Final

TOKEN_ENV_VAR: Final = "HELIO_SDK_TOKEN"  # noqa: S105 - the variable's name, not a secret
"""Environment variable that supplies the token (and receives a generated one)."""

TOKEN_BYTES: Final = 32
"""Random bytes in a generated token (printed as 64 hex characters)."""


@dataclass(frozen=True, slots=True, repr=False)
class SidebandToken:
    """The token SDK clients must present, and whether the operator supplied it."""

    value: str
    from_env: bool
    """Taken from ``HELIO_SDK_TOKEN`` (never echoed) rather than generated (printed once)."""

    def __repr__(self) -> str:
        return f"SidebandToken(<redacted>, from_env={self.from_env})"


def resolve_token(environ: MutableMapping[str, str]) -> SidebandToken:
    """``HELIO_SDK_TOKEN`` when set and non-empty; otherwise a fresh random token.

    A generated token is written back into ``environ`` so processes the proxy starts inherit it.
    An empty variable counts as unset: the sideband never runs without a token.
    """
    supplied = environ.get(TOKEN_ENV_VAR, "")
    if supplied:
        return SidebandToken(supplied, from_env=True)
    token = secrets.token_hex(TOKEN_BYTES)
    environ[TOKEN_ENV_VAR] = token
    return SidebandToken(token, from_env=False)


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <token>`` (scheme case-insensitive).

    Both sides are hashed first so the comparison takes the same time whatever either length.
    """
    scheme, _, presented = (authorization or "").partition(" ")
    expected_digest = hashlib.sha256(token.encode()).digest()
    presented_digest = hashlib.sha256(presented.strip().encode()).digest()
    return hmac.compare_digest(presented_digest, expected_digest) and scheme.lower() == "bearer"
