"""The smaller top-level sections: listen, session, audit, dashboard, sdk."""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from helio_proxy.config.base import ConfigModel, Secret
from helio_proxy.config.durations import Duration, DurationField
from helio_proxy.jsonlimits import (
    DEFAULT_MAX_ARRAY_LENGTH,
    DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_STRING_LENGTH,
    JsonLimits,
)

DEFAULT_MAX_BODY_BYTES: Final = 4 << 20
"""Largest MCP request body accepted on the agent port (4 MiB); larger bodies get HTTP 413."""

DEFAULT_MAX_SSE_SESSIONS: Final = 1024
DEFAULT_MAX_STREAMS: Final = 1024
"""Legacy SSE streams open at once per mount (the reference's cap); more get HTTP 503."""

RESERVED_SESSION_HEADERS: Final = frozenset(
    {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "x-helio-csrf"}
)


ASYMMETRIC_JWT_ALGORITHMS: Final = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
"""Signature algorithms an agent's JWT may use (public-key only: never ``none`` nor ``HS*``)."""

AGENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$"


class AgentToken(ConfigModel):
    """A static bearer token of one agent (only its hash is stored)."""

    agent_id: str = Field(pattern=AGENT_ID_PATTERN)
    """The agent this token authenticates (audit ``agent_id``, ``match.agent``, the ``agent`` limit key)."""

    token_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    """``sha256:<hex>`` of the token; ``helio secret`` prints a fresh token and its hash."""


class JwtIssuer(ConfigModel):
    """An OAuth 2.1 authorization server whose JWT access tokens the proxy accepts."""

    issuer: str = Field(min_length=1)
    """The exact ``iss`` claim of its tokens (e.g. ``https://auth.example.com/``)."""

    jwks_url: str = Field(pattern=r"^https?://\S+$")
    """Where its signing keys (JWKS) are published; fetched off the event loop and cached."""

    audience: list[str] | None = None
    """Accepted ``aud`` values. Default: the resource URL of the MCP endpoint called
    (``<public_url>/mcp[/<name>]``, RFC 8707), so a token minted for another server is refused."""

    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    """Accepted signature algorithms; asymmetric only (``RS*``, ``PS*``, ``ES*``, ``EdDSA``)."""

    required_scopes: list[str] = Field(default_factory=list[str])
    """Scopes every token must carry (``scope`` claim, space-separated, or ``scp`` list)."""

    agent_claim: str = Field(default="sub", min_length=1)
    """The claim whose string value is the agent id."""

    leeway: DurationField = Duration("30s")
    """Clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        for algorithm in value:
            if algorithm not in ASYMMETRIC_JWT_ALGORITHMS:
                raise ValueError(
                    f"algorithm {algorithm!r} is not allowed; use asymmetric ones: "
                    + ", ".join(ASYMMETRIC_JWT_ALGORITHMS)
                )
        return value


class AgentAuthConfig(ConfigModel):
    """Authentication of agents on the MCP port (``docs/agent-auth.md``)."""

    tokens: list[AgentToken] = Field(default_factory=list[AgentToken])
    """Static bearer tokens, one or more per agent, compared by hash in constant time."""

    jwt: list[JwtIssuer] = Field(default_factory=list[JwtIssuer])
    """OAuth 2.1 issuers whose JWT access tokens are accepted (several allowed)."""

    public_url: str | None = Field(default=None, pattern=r"^https?://[^/\s?#]+$")
    """``scheme://host[:port]`` agents reach this listener at (behind a TLS-terminating proxy).
    Default: ``http://`` + the request's ``Host``. Resource URLs (RFC 9728 metadata, the default
    JWT audience) are this plus the endpoint path."""

    authorization_servers: list[str] | None = None
    """Listed in the protected-resource metadata. Default: every ``jwt[].issuer``."""

    scopes_supported: list[str] | None = None
    """Listed in the protected-resource metadata. Default: every ``jwt[].required_scopes``."""

    @model_validator(mode="after")
    def _something_to_check(self) -> AgentAuthConfig:
        if not self.tokens and not self.jwt:
            raise ValueError("listen.auth needs 'tokens' or 'jwt' (or remove it)")
        hashes = [token.token_hash for token in self.tokens]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two tokens share a hash; each needs its own token")
        issuers = [issuer.issuer for issuer in self.jwt]
        if len(set(issuers)) != len(issuers):
            raise ValueError("an issuer is listed twice")
        return self


class ListenConfig(ConfigModel):
    """The agent-facing MCP listener."""

    port: int = Field(default=3000, ge=0, le=65535)
    """TCP port (0 picks a free one)."""

    host: str = "127.0.0.1"
    """Bind address. Keep loopback unless an authenticating reverse proxy is in front."""

    allowed_origins: list[str] = Field(default_factory=list[str])
    """Exact browser origins (``https://app.example.com``) allowed to call ``/mcp``, besides loopback
    origins (``http://localhost:*``, ``http://127.0.0.1:*``, ``http://[::1]:*``), which are accepted when
    bound to loopback; requests with any other ``Origin`` get 403."""

    allowed_hosts: list[str] | None = None
    """``Host`` header values accepted (DNS-rebinding guard), on every listener, besides loopback
    names when that listener is bound to loopback. Default: loopback names when bound to loopback,
    anything otherwise."""

    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    """Largest request body accepted; larger bodies get HTTP 413 (``helio wrap``: the longest stdin line)."""

    max_json_depth: int = Field(default=DEFAULT_MAX_JSON_DEPTH, ge=2, le=512)
    """Deepest nesting of arrays and objects in one message (the envelope counts: ``{"params": {"arguments": {}}}``
    is 3); deeper messages get JSON-RPC ``-32600`` with ``data.reason: input_limit_exceeded``."""

    max_string_length: int = Field(default=DEFAULT_MAX_STRING_LENGTH, gt=0)
    """Longest JSON string (or object key) in one message, in bytes as sent; longer ones get ``-32600``
    ``input_limit_exceeded``."""

    max_array_length: int = Field(default=DEFAULT_MAX_ARRAY_LENGTH, gt=0)
    """Most elements in one array (or members in one object) of a message; more get ``-32600``
    ``input_limit_exceeded``."""

    max_sse_sessions: int = Field(default=DEFAULT_MAX_SSE_SESSIONS, gt=0)
    """Legacy SSE streams (``GET /sse``) open at once, per mount; one more gets HTTP 503 with ``Retry-After``
    and ``data: {reason: capacity_exhausted, limit: max_sse_sessions, max}``."""

    max_streams: int = Field(default=DEFAULT_MAX_STREAMS, gt=0)
    """Streamable HTTP server-to-client streams (``GET /mcp``) open at once in this process, over every
    mount; one more gets HTTP 503 with ``Retry-After`` and ``data: {reason: capacity_exhausted, limit:
    max_streams, max}``."""

    @property
    def json_limits(self) -> JsonLimits:
        """The JSON shape caps as the ingress applies them."""
        return JsonLimits(self.max_json_depth, self.max_string_length, self.max_array_length)

    auth: AgentAuthConfig | None = None
    """Agent authentication (static bearer tokens and/or OAuth JWTs). Without it, anyone who can
    reach the port is served; ``helio start`` then refuses a non-loopback ``host``."""

    allow_unauthenticated: bool = False
    """Serve a non-loopback ``host`` without ``auth`` (only behind something that authenticates)."""

    @model_validator(mode="after")
    def _jwt_audience_pinned(self) -> ListenConfig:
        # The default JWT audience is built from the request's Host; beyond loopback, with no
        # allowed_hosts, any Host is accepted, so the audience must not come from it.
        auth = self.auth
        loopback = self.host in ("127.0.0.1", "localhost", "::1", "[::1]") or self.host.startswith("127.")
        if auth is None or loopback or self.allowed_hosts is not None or auth.public_url is not None:
            return self
        for issuer in auth.jwt:
            if issuer.audience is None:
                raise ValueError(
                    f"auth.jwt issuer {issuer.issuer!r}: on a non-loopback host set listen.auth.public_url "
                    "(or listen.allowed_hosts, or the issuer's audience): the default audience would "
                    "otherwise come from the request's Host header"
                )
        return self

    @field_validator("allowed_origins")
    @classmethod
    def _origins_shape(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "null" or "*" in origin:
                raise ValueError(f"{origin!r}: wildcards and 'null' are not allowed; list exact origins")
            if not re.match(r"^https?://[^/\s?#]+$", origin):
                raise ValueError(
                    f"{origin!r}: an origin is scheme://host[:port] with no path, e.g. https://app.example.com"
                )
        return value


class IdentitySource(ConfigModel):
    """One step of the session identity chain."""

    source: Literal["header", "meta", "legacy_header"]
    """``header`` (a named ``x-`` header), ``meta`` (from the call's ``params._meta``), ``legacy_header`` (``Mcp-Session-Id``)."""

    name: str | None = None
    """``header``: the header name, starting with ``x-``. ``meta``: the ``_meta`` key whose string value is the id
    (e.g. ``io.gethelio/session-id``, what the SDK's ``HelioContext.meta`` sends); without it, ``meta`` reads the
    client info (``clientinfo:<name>@<version>``)."""

    @model_validator(mode="after")
    def _name_rules(self) -> IdentitySource:
        if self.source == "header":
            if not self.name:
                raise ValueError("source 'header' needs 'name'")
            lowered = self.name.lower()
            if not lowered.startswith("x-") or lowered in RESERVED_SESSION_HEADERS:
                raise ValueError(
                    f"header {self.name!r}: identity headers must start with 'x-' and not be reserved"
                )
        elif self.source == "meta" and self.name is not None:
            if not self.name or self.name != self.name.strip():
                raise ValueError(f"meta key {self.name!r}: must be non-empty, without surrounding spaces")
        elif self.name is not None:
            raise ValueError(f"source {self.source!r} takes no 'name'")
        return self


def _default_identity() -> list[IdentitySource]:
    return [
        IdentitySource(source="header", name="x-helio-session-id"),
        IdentitySource(source="meta", name="io.gethelio/session-id"),
        IdentitySource(source="legacy_header"),
    ]


class SessionConfig(ConfigModel):
    """How the proxy decides which session a call belongs to."""

    identity: list[IdentitySource] = Field(default_factory=_default_identity, min_length=1)
    """Ordered sources; the first that yields a value (1-256 chars) wins."""

    on_unresolved: Literal["deny", "anonymous"] = "deny"
    """When no source yields a session: deny calls that need one, or pool them as ``unknown``."""

    max_sessions: int = Field(default=10_000, gt=0)
    """Sessions whose state (evidence, calls, dependencies, context) is held at once; idle ones are
    swept first, then a new session's write gets sideband 503 ``capacity_exhausted``."""

    max_keys_per_session: int = Field(default=256, gt=0)
    """Evidence keys, context keys and tools with declared dependencies, each, per session."""

    max_tools_per_session: int = Field(default=1024, gt=0)
    """Distinct tools whose calls a session remembers (a call of one more is forwarded, not remembered)."""

    max_session_bytes: int = Field(default=4 << 20, gt=0)
    """Encoded size of one session's evidence data and context values."""

    max_total_bytes: int = Field(default=256 << 20, gt=0)
    """Encoded size of every session's evidence data and context values (per process, or per store
    with the store-backed session state)."""

    @field_validator("identity")
    @classmethod
    def _no_duplicates(cls, value: list[IdentitySource]) -> list[IdentitySource]:
        seen: set[tuple[str, str | None]] = set()
        for item in value:
            marker = (item.source, item.name.lower() if item.name else None)
            if marker in seen:
                raise ValueError(f"duplicate identity source {marker}")
            seen.add(marker)
        return value


class AuditConfig(ConfigModel):
    """Where and how governed calls are recorded."""

    storage: Literal["sqlite"] = "sqlite"
    """Audit backend of the reference schema (``sqlite``); see ``store.url`` for PostgreSQL."""

    path: str = "./helio-audit.db"
    """SQLite file (created with mode 0600)."""

    retention: DurationField = Duration("90d")
    """Records older than this are deleted at startup and daily."""

    include_responses: bool = True
    """Store upstream responses in full; ``false`` stores a summary instead."""

    durability: Literal["batched", "strict"] = "batched"
    """``batched``: records are committed in groups within 100 ms of the call. ``strict``: a forwarded
    call's record is committed (fsync'd) before its response is returned. See docs/audit.md."""

    signing_key: Secret[str | None] = None
    """Ed25519 private key (PEM file path, or the PEM text itself via ``${VAR}``) that signs every record."""

    redact: list[str] = Field(default_factory=list[str])
    """Extra key patterns (case-insensitive regular expressions) whose values are replaced with
    ``[REDACTED]`` before storage; they add to the built-in ones (password, secret, token, api key,
    authorization, cookie) and card-number masking, which always apply."""

    hash_chain: bool = True
    """Link every record to its predecessor by SHA-256 so ``helio audit verify`` can detect edits."""

    writer: Literal["auto", "process", "thread"] = "auto"
    """Where batches are turned into rows, chained and committed. ``process``: a child process of the
    proxy, on another core (``batched`` durability only). ``thread``: a thread of the proxy's own
    process. ``auto``: ``process`` under ``helio start`` with ``batched`` durability on a machine
    with at least two usable CPUs per worker; ``thread`` otherwise (fewer CPUs, ``strict``
    durability, ``helio wrap``, a proxy embedded in another program). See docs/audit.md."""

    @model_validator(mode="after")
    def _writer_fits_durability(self) -> AuditConfig:
        if self.writer == "process" and self.durability == "strict":
            raise ValueError(
                "audit.writer: process needs durability: batched (a strict call waits for its own"
                " commit, which the proxy's own writer thread does with one less hop); use"
                " writer: thread or auto"
            )
        return self

    @field_validator("redact")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"redact pattern {pattern!r} is not a valid regular expression: {exc}"
                ) from None
        return value


OPERATOR_ROLES: Final = ("viewer", "approver", "admin")
"""``viewer`` reads; ``approver`` also approves and denies; ``admin`` also uses break-glass."""

Role = Literal["viewer", "approver", "admin"]


class OperatorConfig(ConfigModel):
    """A named operator of the dashboard and its REST API."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    """Who this is; recorded as the approver of what they approve."""

    secret_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    """``sha256:<hex>`` of the operator's secret; ``helio secret`` prints a fresh secret and its hash
    (``helio secret --hash`` hashes one from stdin). The secret itself is never stored in the config."""

    roles: list[Role] = Field(default_factory=lambda: ["approver"], min_length=1)
    """``viewer`` (read only), ``approver`` (approve/deny), ``admin`` (everything, incl. break-glass)."""


class DashboardConfig(ConfigModel):
    """The operator plane: dashboard UI and REST API."""

    enabled: bool = True
    """Serve the dashboard and its API."""

    port: int = Field(default=3100, ge=0, le=65535)
    """TCP port."""

    host: str = "127.0.0.1"
    """Bind address."""

    api_secret: Secret[str | None] = None
    """Shared operator secret (Bearer token and login), in clear or as its ``sha256:<hex>`` hash
    (``helio secret`` prints both). Required when enabled, unless ``allow_open_mode``."""

    allow_open_mode: bool = False
    """Run the dashboard without a secret (loopback hosts only)."""

    sse_heartbeat_interval: DurationField = Duration("30s")
    """Heartbeat interval of ``/api/events``."""

    operators: list[OperatorConfig] = Field(default_factory=list[OperatorConfig])
    """Named operators besides the shared ``api_secret``; each authenticates with its own secret."""

    trusted_proxies: list[str] = Field(default_factory=list[str])
    """Addresses or networks (``10.0.0.5``, ``10.0.0.0/8``, ``::1``) of reverse proxies in front of
    the dashboard whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed (read at start).
    Empty (the default): those headers are ignored, and the client address that login throttling
    counts by is the TCP peer's."""

    @field_validator("operators")
    @classmethod
    def _operators_unique(cls, value: list[OperatorConfig]) -> list[OperatorConfig]:
        names = [operator.name for operator in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"operator {name!r} is listed twice")
        hashes = [operator.secret_hash for operator in value]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two operators share a secret; each needs its own")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (CIDR); list each proxy's address, "
                    "e.g. 10.0.0.5 or 10.0.0.0/8 (a wildcard would let any client pick its own address)"
                ) from None
        return value


class SdkConfig(ConfigModel):
    """The SDK sideband (evidence, context, dependencies)."""

    enabled: bool = False
    """Serve the sideband."""

    port: int = Field(default=3200, ge=0, le=65535)
    """TCP port."""

    host: str = "127.0.0.1"
    """Bind address (a non-loopback bind draws a warning)."""

    evaluation_ttl: DurationField = Duration("10m")
    """Adapter ``/evaluate`` to ``/audit`` window."""
