"""``upstream`` / ``upstreams``: the MCP server(s) the proxy governs."""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from helio_proxy.config.base import ConfigModel, Secret
from helio_proxy.config.data_plane import CredentialsConfig, DataPlaneChecks
from helio_proxy.config.durations import Duration, DurationField

RESERVED_UPSTREAM_HEADERS: Final = frozenset(
    {
        "mcp-session-id",
        "mcp-protocol-version",
        "content-type",
        "content-length",
        "host",
        "mcp-method",
        "mcp-name",
    }
)
"""Headers the proxy owns on the upstream leg; static ``headers`` may not set them."""

UPSTREAM_NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ENV_VAR_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

DEFAULT_MAX_RESPONSE_BYTES: Final = 16 << 20
"""Largest answer the proxy reads from an upstream for one request (16 MiB), all its messages counted."""

Transport = Literal["streamable-http", "sse", "stdio"]
ProtocolPin = Literal["auto", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]


class UpstreamConfig(ConfigModel):
    """One upstream MCP server."""

    name: str | None = None
    """Mount name when listed under ``upstreams`` (served at ``/mcp/<name>``); lowercase letters, digits, ``_``, ``-``."""

    url: str
    """Upstream endpoint, e.g. ``http://127.0.0.1:8080/mcp``. Required for every transport (use ``stdio://NAME`` for stdio)."""

    transport: Transport = "streamable-http"
    """How the proxy talks to the upstream: ``streamable-http``, ``sse`` (legacy HTTP+SSE) or ``stdio``."""

    protocol_version: ProtocolPin = "auto"
    """MCP protocol revision to speak upstream; ``auto`` negotiates, a date pins it."""

    command: str | None = None
    """Executable to spawn for ``transport: stdio``."""

    args: list[str] = Field(default_factory=list[str])
    """Arguments for ``command``."""

    env: Secret[dict[str, str]] = Field(default_factory=dict[str, str])
    """Environment variables set for the ``transport: stdio`` child (``${VAR}`` allowed), over
    what it inherits: under ``helio start`` only ``PATH``, ``HOME``, ``USER``, ``LOGNAME``,
    ``SHELL``, ``TERM``, ``TMPDIR``, ``TZ``, ``LANG`` and ``LC_*``; under ``helio wrap`` the
    client's environment. Either way no ``HELIO_*`` variable and none the config names as
    ``${VAR}`` is inherited. Names starting with ``HELIO_`` are refused."""

    connect_timeout: DurationField = Duration("10s")
    """How long to wait for a connection (and the legacy SSE ``endpoint`` event)."""

    request_timeout: DurationField = Duration("30s")
    """How long the upstream has to answer one request, counted from the send: silence past it, or an
    answer (a stream of notifications included) still unfinished when it ends, gives the client
    ``-32603`` (``failure_reason: timeout``). ``initialize`` also gets ``connect_timeout``."""

    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1024)
    """Largest answer read from the upstream for one request, every message of it counted (a JSON
    body, an SSE stream, a stdio line); past it the request fails with ``-32603``
    ``failure_class: response_too_large`` and the rest is not read."""

    forward_headers: list[str] = Field(default_factory=list[str])
    """Client request headers to pass upstream; names must start with ``x-`` (see ``forward_authorization``)."""

    forward_authorization: bool = False
    """Pass the agent's own ``Authorization`` header upstream. Off by default: the agent's token is
    for the proxy, and the upstream's credential is ``credentials``. Never relays the token the
    proxy checked itself under ``listen.auth`` (no token passthrough)."""

    credentials: CredentialsConfig | None = None
    """The credential the proxy presents to this upstream (from the environment or a file, or OAuth)."""

    data_plane: DataPlaneChecks = Field(default_factory=DataPlaneChecks)
    """Data-plane check modes for this upstream (over ``data_plane``; unset keys inherit)."""

    headers: Secret[dict[str, str]] = Field(default_factory=dict[str, str])
    """Static headers added to every upstream request (override the client's); ``${VAR}`` allowed."""

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str | None) -> str | None:
        if value is not None and not UPSTREAM_NAME_PATTERN.match(value):
            raise ValueError(
                "must be 1-64 chars of lowercase letters, digits, '_' or '-', starting alphanumeric"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if not re.match(r"^(https?|stdio)://\S+$", value):
            raise ValueError("must be an http(s):// URL (or stdio://NAME for a stdio upstream)")
        return value

    @field_validator("forward_headers")
    @classmethod
    def _forward_headers_shape(cls, value: list[str]) -> list[str]:
        lowered = [name.lower() for name in value]
        for name in lowered:
            if not re.match(r"^x-[a-z0-9-]+$", name):
                raise ValueError(f"{name!r}: forwarded header names must start with 'x-'")
        return lowered

    @field_validator("headers")
    @classmethod
    def _static_headers_shape(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in RESERVED_UPSTREAM_HEADERS:
                raise ValueError(f"{name!r} is reserved: the proxy sets it itself")
            if not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", name):
                raise ValueError(f"{name!r} is not a valid header name")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not ENV_VAR_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name.upper().startswith("HELIO_"):
                raise ValueError(
                    f"{name!r}: HELIO_* variables are the proxy's own and never reach an upstream"
                )
        return value

    @model_validator(mode="after")
    def _transport_needs(self) -> UpstreamConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError("transport 'stdio' needs 'command'")
        if self.transport != "stdio" and self.env:
            raise ValueError("'env' is for transport 'stdio' (a command the proxy starts)")
        if self.transport != "stdio" and self.url.startswith("stdio://"):
            raise ValueError(f"url {self.url!r} is a stdio placeholder but transport is {self.transport!r}")
        if self.credentials is not None:
            stdio = self.transport == "stdio"
            if stdio != (self.credentials.type == "env"):
                raise ValueError(
                    "credentials of type 'env' are for stdio upstreams, and stdio upstreams take only type 'env'"
                )
        if self.protocol_version == "2026-07-28" and self.transport != "streamable-http":
            raise ValueError("protocol_version '2026-07-28' needs transport 'streamable-http'")
        return self
