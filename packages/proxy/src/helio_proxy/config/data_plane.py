"""``data_plane`` and ``upstream.credentials``: what a call may carry, what reaches the agent, and
the credentials the proxy holds for an upstream."""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from helio_proxy.config.base import ConfigModel
from helio_proxy.config.durations import Duration, DurationField

Mode = Literal["enforce", "warn", "off"]
ScanAction = Literal["redact", "block", "flag"]
ScanScope = Literal["arguments", "results"]

BUILTIN_DETECTORS: Final = (
    "aws_access_key",
    "aws_secret_key",
    "github_token",
    "slack_token",
    "stripe_key",
    "google_api_key",
    "openai_api_key",
    "jwt",
    "private_key",
    "card_number",
    "email",
    "phone",
)
"""Detector names ``data_plane.scan[].detect`` accepts (see ``docs/data-plane.md``)."""

ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KIND_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class DataPlaneChecks(ConfigModel):
    """Modes of the data-plane checks; an unset field inherits (rule → upstream → ``data_plane``)."""

    mode: Mode | None = None
    """Every check's mode unless set below: ``enforce`` (block), ``warn`` (forward, audit the finding) or ``off``."""

    input_schema: Mode | None = None
    """Arguments against the tool's ``inputSchema`` (from its baseline); a violation blocks with ``invalid_arguments``."""

    output_schema: Mode | None = None
    """A result's ``structuredContent`` against the tool's ``outputSchema``; a violation answers ``invalid_result``."""

    unknown_tools: Mode | None = None
    """A call to a tool the upstream does not list (after one refresh of the list) blocks with ``tool_not_found``.
    Set ``off`` for upstreams whose ``tools/list`` is partial."""


class ToolOverride(DataPlaneChecks):
    """Check modes for some tools (the first entry whose ``tools`` and ``upstreams`` match wins)."""

    tools: list[str] = Field(default_factory=lambda: ["*"])
    """Tool name globs (``fnmatch``: ``*``, ``?``, ``[...]``)."""

    upstreams: list[str] | None = None
    """Upstream names this entry is limited to (default: all)."""


class ScanRule(ConfigModel):
    """One content-scanning rule: what to look for, where, and what to do when it is found."""

    name: str
    """Named in block feedback, the audit record and metrics."""

    detect: list[str] = Field(default_factory=list[str])
    """Built-in detectors: ``aws_access_key``, ``aws_secret_key``, ``github_token``, ``slack_token``,
    ``stripe_key``, ``google_api_key``, ``openai_api_key``, ``jwt``, ``private_key``,
    ``card_number`` (Luhn-checked), ``email``, ``phone``."""

    patterns: dict[str, str] = Field(default_factory=dict[str, str])
    """Operator patterns: ``{kind: regex}`` (Python ``re`` syntax); a match is reported as ``kind``."""

    scope: list[ScanScope] = Field(default_factory=lambda: ["arguments", "results"])
    """Where to scan: the call's ``arguments``, the tool's ``results`` (text, structured content, resources)."""

    action: ScanAction = "flag"
    """``redact`` (replace each match with ``[REDACTED:kind]``), ``block`` (answer ``sensitive_content``)
    or ``flag`` (relay unchanged, record the finding)."""

    mode: Mode | None = None
    """``warn`` turns ``block``/``redact`` into ``flag``; ``off`` disables the rule (default: ``data_plane.mode``)."""

    tools: list[str] = Field(default_factory=lambda: ["*"])
    """Tool name globs the rule applies to."""

    upstreams: list[str] | None = None
    """Upstream names the rule applies to (default: all)."""

    @field_validator("detect")
    @classmethod
    def _known_detectors(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in BUILTIN_DETECTORS:
                raise ValueError(f"unknown detector {name!r}; known: {', '.join(BUILTIN_DETECTORS)}")
        return value

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, pattern in value.items():
            if not KIND_NAME.match(kind):
                raise ValueError(f"{kind!r}: a kind is lowercase letters, digits and '_'")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{kind}: invalid regular expression: {exc}") from exc
            if compiled.match(""):
                raise ValueError(f"{kind}: the pattern matches the empty string")
        return value

    @model_validator(mode="after")
    def _detects_something(self) -> ScanRule:
        if not self.detect and not self.patterns:
            raise ValueError("a scan rule needs 'detect' and/or 'patterns'")
        return self


class RuleDataPlane(DataPlaneChecks):
    """Data-plane modes and scan rules for the calls a policy rule matches (``policies.rules[].data_plane``).

    A set field wins over ``data_plane.tools``, the upstream's and the global modes; an unset one
    inherits them. The rule that counts is the first policy rule matching the call."""

    scan: list[ScanRule] = Field(default_factory=list[ScanRule])
    """Scan rules for the calls this policy rule matches, run with the global ``data_plane.scan``
    rules; a rule's ``mode`` defaults to this entry's ``mode``, then ``data_plane.mode``."""


class DataPlaneConfig(DataPlaneChecks):
    """Schema enforcement, unknown tools and content scanning (``docs/data-plane.md``)."""

    mode: Mode | None = "enforce"
    """Default mode of every check: ``enforce``, ``warn`` or ``off``."""

    tools: list[ToolOverride] = Field(default_factory=list[ToolOverride])
    """Check modes for particular tools (first match wins, over the upstream's and the global modes)."""

    scan: list[ScanRule] = Field(default_factory=list[ScanRule])
    """Content-scanning rules (none by default)."""

    refresh_interval: DurationField = Duration("0s")
    """Least time between two ``tools/list`` refreshes that unknown tools trigger, per upstream
    (concurrent refreshes are always shared; within the interval an unknown tool is refused at once)."""


CredentialType = Literal["bearer", "header", "env", "oauth2_client_credentials", "oauth2_authorization_code"]


def _env_reference(value: str | None, field: str) -> str | None:
    if value is not None and not ENV_NAME.match(value):
        raise ValueError(
            f"{field} names an environment variable (e.g. UPSTREAM_TOKEN), not a secret: "
            "never write a credential in helio.yaml"
        )
    return value


class CredentialsConfig(ConfigModel):
    """A credential the proxy holds for an upstream; the agent never sees it (``docs/data-plane.md``)."""

    type: CredentialType
    """``bearer`` (``Authorization: Bearer``), ``header`` (a named header), ``env`` (a stdio child's
    environment variable), ``oauth2_client_credentials`` or ``oauth2_authorization_code`` (PKCE, via
    ``helio auth login UPSTREAM``)."""

    name: str | None = None
    """How the audit record names the credential (default: ``<upstream>:<type>``); never its value."""

    from_env: str | None = None
    """``bearer``/``header``/``env``: the environment variable holding the secret."""

    from_file: str | None = None
    """``bearer``/``header``/``env``: a file holding the secret (surrounding whitespace is dropped)."""

    header: str | None = None
    """``header``: the header to set (e.g. ``X-Api-Key``)."""

    env_var: str | None = None
    """``env``: the variable set in the stdio child's environment."""

    token_url: str | None = None
    """OAuth: the authorization server's token endpoint."""

    authorization_url: str | None = None
    """``oauth2_authorization_code``: the authorization endpoint ``helio auth login`` opens."""

    client_id: str | None = None
    """OAuth client id."""

    client_secret_env: str | None = None
    """OAuth: environment variable holding the client secret (none for a public PKCE client)."""

    client_secret_file: str | None = None
    """OAuth: file holding the client secret."""

    scope: str | None = None
    """OAuth scopes, space-separated."""

    resource: str | None = None
    """OAuth resource indicator (RFC 8707) sent with token requests (MCP servers expect their URL)."""

    refresh_before: DurationField = Duration("60s")
    """OAuth: refresh an access token this long before it expires."""

    token_store: str = "helio-oauth-tokens.json"  # noqa: S105 (a file name)
    """``oauth2_authorization_code``: file holding refresh tokens, encrypted (0600)."""

    token_key_env: str = "HELIO_TOKEN_KEY"  # noqa: S105 (a variable name)
    """``oauth2_authorization_code``: environment variable holding the token store's key (a Fernet key)."""

    redirect_port: int = Field(default=0, ge=0, le=65535)
    """``helio auth login``: loopback port of the redirect listener (0 picks a free one)."""

    @field_validator("from_env", "client_secret_env", "token_key_env")
    @classmethod
    def _env_names(cls, value: str | None) -> str | None:
        return _env_reference(value, "this key")

    @field_validator("token_url", "authorization_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://\S+$", value):
            raise ValueError("must be an http(s):// URL")
        return value

    @model_validator(mode="after")
    def _type_needs(self) -> CredentialsConfig:
        if self.type in ("bearer", "header", "env"):
            if (self.from_env is None) == (self.from_file is None):
                raise ValueError(
                    f"credentials of type {self.type!r} need exactly one of 'from_env' or 'from_file'"
                )
            if self.type == "header" and not self.header:
                raise ValueError("credentials of type 'header' need 'header'")
            if self.type == "env" and not (self.env_var and ENV_NAME.match(self.env_var)):
                raise ValueError("credentials of type 'env' need 'env_var' (a variable name)")
            if self.env_var is not None and self.env_var.upper().startswith("HELIO_"):
                raise ValueError("'env_var': HELIO_* variables are the proxy's own")
        else:
            if not self.token_url or not self.client_id:
                raise ValueError(f"credentials of type {self.type!r} need 'token_url' and 'client_id'")
            if self.type == "oauth2_client_credentials" and not (
                self.client_secret_env or self.client_secret_file
            ):
                raise ValueError(
                    "'oauth2_client_credentials' needs 'client_secret_env' or 'client_secret_file'"
                )
            if self.type == "oauth2_authorization_code" and not self.authorization_url:
                raise ValueError("'oauth2_authorization_code' needs 'authorization_url'")
            if self.from_env or self.from_file:
                raise ValueError(
                    "OAuth credentials take 'client_secret_env'/'client_secret_file', not 'from_env'/'from_file'"
                )
        return self
