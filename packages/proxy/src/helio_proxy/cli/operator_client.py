"""The operator API (dashboard port, ``/api/*``) as the terminal commands use it.

The secret comes from the environment (:data:`SECRET_ENV_VAR`), never from the command line
(where ``ps`` and shell history would show it). Every failure is an :class:`OperatorApiError`
whose message names the fix: a missing secret, a refused one, a proxy that is not running.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import httpx

from helio_proxy.config import HelioConfig
from helio_proxy.errors import HelioProxyError

SECRET_ENV_VAR: Final = "HELIO_API_SECRET"  # noqa: S105 - a variable's name
"""Where the terminal commands read the operator secret from (``dashboard.api_secret`` or a named
operator's own secret; the operator recorded is whoever the secret belongs to)."""

REQUEST_TIMEOUT: Final = 10.0
"""Seconds one API request may take."""


class OperatorApiError(HelioProxyError):
    """The operator API could not be reached, refused the request, or answered an error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def connect_host(host: str) -> str:
    """Where to connect for a listener bound to ``host`` (a wildcard bind is reached on loopback)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def http_base(host: str, port: int) -> str:
    shown = connect_host(host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def dashboard_url(config: HelioConfig) -> str:
    """The base URL of the config's dashboard listener (``OperatorApiError`` if it is disabled)."""
    dashboard = config.dashboard
    if not dashboard.enabled:
        raise OperatorApiError(
            "the config has dashboard.enabled: false, so the proxy serves no operator API; "
            "enable it (with dashboard.api_secret) or pass --url"
        )
    return http_base(dashboard.host, dashboard.port)


@dataclass
class OperatorClient:
    """A blocking client of one proxy's operator API."""

    base_url: str
    secret: str | None
    transport: httpx.BaseTransport | None = None

    @classmethod
    def from_environment(
        cls, base_url: str, environ: Mapping[str, str] | None = None, *, required: bool = True
    ) -> OperatorClient:
        """A client with the secret from ``HELIO_API_SECRET`` (an error naming it when unset and required)."""
        env = os.environ if environ is None else environ
        secret = env.get(SECRET_ENV_VAR) or None
        if secret is None and required:
            raise OperatorApiError(
                f"{SECRET_ENV_VAR} is not set: export {SECRET_ENV_VAR}=<dashboard.api_secret, or your "
                "operator secret> and run the command again"
            )
        return cls(base_url.rstrip("/"), secret)

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.secret}"} if self.secret else {}

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        """The decoded JSON answer of a 2xx; ``OperatorApiError`` for anything else."""
        url = self.base_url + path
        try:
            with httpx.Client(timeout=REQUEST_TIMEOUT, transport=self.transport) as client:
                response = client.request(method, url, json=json, params=params, headers=self._headers())
        except httpx.ConnectError:
            raise OperatorApiError(
                f"nothing answers at {self.base_url}: is the proxy running (helio start -c FILE) with "
                "the dashboard enabled? Pass -c for its config, or --url for its dashboard address"
            ) from None
        except httpx.HTTPError as exc:
            raise OperatorApiError(f"request to {url} failed: {exc}") from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.is_success:
            return body
        message: object = cast(dict[str, Any], body).get("error") if isinstance(body, dict) else None
        if not isinstance(message, str):
            message = f"HTTP {response.status_code}"
        if response.status_code == 401:
            hint = (
                f"{SECRET_ENV_VAR} is not set"
                if self.secret is None
                else f"{SECRET_ENV_VAR} is neither dashboard.api_secret nor an operator's secret"
            )
            raise OperatorApiError(
                f"the operator API refused the credentials ({hint}): set {SECRET_ENV_VAR} to the secret "
                "of the proxy you are talking to",
                status=401,
            )
        if response.status_code == 403:
            raise OperatorApiError(
                f"{message} (use the secret of an operator with that role in {SECRET_ENV_VAR})",
                status=403,
            )
        raise OperatorApiError(message, status=response.status_code)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("POST", path, json=dict(body))
