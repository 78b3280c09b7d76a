"""Credentials the proxy presents to an upstream; the agent never sees them.

A :class:`CredentialProvider` gives the headers (HTTP upstreams) or environment variables (stdio
upstreams) to add to what is sent upstream. Secrets are read from the environment or a file when
they are needed (so a rotated file is picked up), OAuth tokens are obtained and refreshed by
:mod:`helio_proxy.dataplane.oauth`. The audit names a credential by :attr:`CredentialProvider.name`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from helio_proxy.config.data_plane import CredentialsConfig
from helio_proxy.errors import UpstreamUnavailable


class CredentialProvider(Protocol):
    """What an upstream transport asks for before it sends anything."""

    name: str
    """How the audit names this credential (never its value)."""

    async def headers(self) -> dict[str, str]:
        """Headers to set on every upstream HTTP request (``UpstreamUnavailable`` when unavailable)."""
        ...

    def environment(self) -> dict[str, str]:
        """Variables to set in a stdio child's environment."""
        ...


class CredentialMissing(UpstreamUnavailable):
    """A credential could not be read or obtained; nothing was sent upstream."""

    def __init__(self, message: str, *, failure_reason: str = "credential_unavailable") -> None:
        super().__init__(message, failure_reason=failure_reason)


def read_secret(environ: Mapping[str, str], *, env: str | None, file: str | None, what: str) -> str:
    """The secret held by environment variable ``env`` or file ``file`` (``CredentialMissing`` otherwise)."""
    if env is not None:
        value = environ.get(env)
        if not value:
            raise CredentialMissing(f"{what}: environment variable {env} is not set")
        return value.strip()
    assert file is not None
    try:
        value = Path(file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialMissing(f"{what}: cannot read {file}: {exc.strerror}") from exc
    if not value:
        raise CredentialMissing(f"{what}: {file} is empty")
    return value


class StaticCredential:
    """A secret from the environment or a file, as a bearer token, a named header or a child's variable."""

    def __init__(self, config: CredentialsConfig, name: str, environ: Mapping[str, str]) -> None:
        self.config = config
        self.name = name
        self._environ = environ

    def _secret(self) -> str:
        return read_secret(
            self._environ,
            env=self.config.from_env,
            file=self.config.from_file,
            what=f"credential {self.name}",
        )

    async def headers(self) -> dict[str, str]:
        if self.config.type == "bearer":
            return {"authorization": f"Bearer {self._secret()}"}
        if self.config.type == "header":
            assert self.config.header is not None
            return {self.config.header.lower(): self._secret()}
        return {}

    def environment(self) -> dict[str, str]:
        if self.config.type != "env":
            return {}
        assert self.config.env_var is not None
        return {self.config.env_var: self._secret()}


def credential_name(config: CredentialsConfig, upstream: str | None) -> str:
    """The name the audit uses: the configured one, else ``<upstream>:<type>``."""
    return config.name or f"{upstream or 'upstream'}:{config.type}"


def provider_for(
    config: CredentialsConfig | None, upstream: str | None, environ: Mapping[str, str]
) -> CredentialProvider | None:
    """The provider for ``upstream.credentials`` (``None`` without one)."""
    if config is None:
        return None
    name = credential_name(config, upstream)
    if config.type in ("oauth2_client_credentials", "oauth2_authorization_code"):
        from helio_proxy.dataplane.oauth import OAuthCredential

        return OAuthCredential(config, name, environ, upstream=upstream or "")
    return StaticCredential(config, name, environ)
