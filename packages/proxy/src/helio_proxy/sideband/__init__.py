"""The SDK sideband (``sdk`` port): evidence, context, dependencies and session state over HTTP."""

from helio_proxy.sideband.app import MAX_BODY_BYTES, SidebandApp
from helio_proxy.sideband.auth import TOKEN_ENV_VAR, SidebandToken, bearer_matches, resolve_token

__all__ = [
    "MAX_BODY_BYTES",
    "TOKEN_ENV_VAR",
    "SidebandApp",
    "SidebandToken",
    "bearer_matches",
    "resolve_token",
]
