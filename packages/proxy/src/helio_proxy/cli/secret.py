"""``helio secret``: a fresh secret and the ``sha256:<hex>`` hash a config stores instead of it.

The output is meant for people and scripts alike, and other settings that take a hash
(``dashboard.operators[].secret_hash``, ``dashboard.api_secret`` in its hashed form) read the
same format::

    secret: <43 URL-safe characters, 256 random bits>
    hash: sha256:<64 hex digits>

``--json`` prints ``{"secret": ..., "hash": ...}`` instead. ``--hash`` hashes a secret the
operator already has, read from stdin (never from the command line, where it would land in the
shell history and the process list), and prints only the ``hash`` line.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Final

from helio_proxy.operator.auth import secret_digest

SECRET_BYTES: Final = 32
"""Random bytes in a generated secret (256 bits; 43 characters once URL-safe base64 encoded)."""


@dataclass(frozen=True, slots=True)
class SecretPair:
    secret: str | None
    """``None`` when only a hash was asked for (``--hash``)."""
    hash: str

    def render(self, *, as_json: bool) -> str:
        fields = (
            {"secret": self.secret, "hash": self.hash} if self.secret is not None else {"hash": self.hash}
        )
        if as_json:
            return json.dumps(fields)
        return "\n".join(f"{label}: {value}" for label, value in fields.items())


def fresh_secret() -> SecretPair:
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return SecretPair(secret=secret, hash=secret_digest(secret))


def hash_of(text: str) -> SecretPair:
    """The hash of a secret read from stdin: one trailing line break is not part of it."""
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise ValueError('no secret on stdin (pipe it in: printf %s "$SECRET" | helio secret --hash)')
    return SecretPair(secret=None, hash=secret_digest(secret))
