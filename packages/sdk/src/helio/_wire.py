"""Names and limits of the sideband wire contract (``docs/sideband-api.md``).

The client and the fake both read these, so the two cannot disagree about the protocol.
"""

from typing import Final

DEFAULT_SIDEBAND_URL: Final = "http://127.0.0.1:3200"
"""Where ``helio start`` serves the sideband unless ``sdk.port`` / ``sdk.host`` say otherwise."""

DEFAULT_MCP_PORT: Final = 3000
"""Where ``helio start`` serves MCP by default (``listen.port``): the URL the SDK must *not* be given."""

DEFAULT_TIMEOUT_SECONDS: Final = 5.0
"""Per-request timeout for every sideband call."""

DEFAULT_TTL_SECONDS: Final = 300
"""Lifetime of a piece of evidence when ``ttl_seconds`` is not sent."""

MAX_TTL_SECONDS: Final = 86_400
"""Longest evidence lifetime the sideband accepts (one day)."""

MAX_SESSION_ID_LENGTH: Final = 256
"""Longest session id the sideband accepts, in characters."""

MAX_BODY_BYTES: Final = 1 << 20
"""Largest request body the sideband reads (1 MiB); one byte more is answered with 413."""

ALLOWED_KEYS_PREVIEW: Final = 20
"""How many allowlisted evidence keys a ``evidence_key_not_in_policy_allowlist`` error lists."""

SESSION_HEADER: Final = "x-helio-session-id"
"""The header the agent's MCP client sends so the proxy can tie its calls to SDK evidence."""

SESSION_META_KEY: Final = "io.gethelio/session-id"
"""The ``params._meta`` key carrying the session id where there are no headers (stdio, ``helio wrap``)."""

TOKEN_ENV_VAR: Final = "HELIO_SDK_TOKEN"  # noqa: S105 - a variable name, not a secret
"""Environment variable holding the per-boot sideband token printed by ``helio start``."""

URL_ENV_VAR: Final = "HELIO_SDK_URL"
"""Environment variable holding the sideband's URL (``helio demo`` prints it), read when none is given."""

# Stable error codes: the ``code`` field of every sideband error body.
CODE_ORIGIN_FORBIDDEN: Final = "origin_forbidden"
CODE_METHOD_FORBIDDEN: Final = "method_forbidden"
CODE_BODY_TOO_LARGE: Final = "request_body_too_large"
CODE_UNAUTHORIZED: Final = "unauthorized"
CODE_INVALID_JSON: Final = "invalid_json"
CODE_NOT_FOUND: Final = "not_found"
CODE_METHOD_NOT_ALLOWED: Final = "method_not_allowed"
CODE_SHUTTING_DOWN: Final = "sideband_shutting_down"
CODE_INVALID_REQUEST: Final = "invalid_request"
CODE_KEY_NOT_ALLOWED: Final = "evidence_key_not_in_policy_allowlist"
CODE_INTERNAL_ERROR: Final = "internal_error"  # the proxy's 500; the fake never answers it
CODE_INPUT_LIMIT_EXCEEDED: Final = "input_limit_exceeded"  # a JSON cap (422); the fake never answers it
CODE_CAPACITY_EXHAUSTED: Final = "capacity_exhausted"  # a session-state cap (503); the fake never answers it
