"""``/metrics`` on the dashboard listener, in front of the operator app."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Receive, Scope, Send

from helio_proxy.config.sections import DashboardConfig
from helio_proxy.config.telemetry import MetricsConfig
from helio_proxy.telemetry.metrics import Metrics

METRICS_PATH = "/metrics"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def scrape_secret(config: MetricsConfig, dashboard: DashboardConfig) -> str | None:
    """The secret a scrape must present, or ``None`` when scrapes are open.

    ``auto`` is open only on a loopback dashboard host; a non-loopback host without any secret
    to check refuses every scrape (closed by default)."""
    mode = config.auth
    if mode == "auto":
        mode = "none" if _loopback(dashboard.host) else "bearer"
    if mode == "none":
        return None
    return config.bearer_token or dashboard.api_secret or ""


def _matches(presented: str, secret: str) -> bool:
    if not secret:
        return False
    if secret.startswith("sha256:"):
        digest = "sha256:" + hashlib.sha256(presented.encode()).hexdigest()
        return hmac.compare_digest(digest, secret)
    return hmac.compare_digest(presented.encode(), secret.encode())


class MetricsEndpoint:
    """Answers ``GET /metrics``; every other request goes to ``app``."""

    def __init__(self, app: ASGIApp, metrics: Metrics, secret: str | None) -> None:
        self.app = app
        self.metrics = metrics
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != METRICS_PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _send(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        if self.secret is not None:
            presented = ""
            for key, value in scope["headers"]:
                if key == b"authorization":
                    text = value.decode("latin-1")
                    if text[:7].lower() == "bearer ":
                        presented = text[7:].strip()
            if not _matches(presented, self.secret):
                await _send(send, 401, b"scrape authentication required (Authorization: Bearer)\n", [])
                return
        body = self.metrics.exposition()
        await _send(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    base = [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    if not any(key == b"content-type" for key, _ in headers):
        base.append((b"content-type", b"text/plain; charset=utf-8"))
    await send({"type": "http.response.start", "status": status, "headers": [*base, *headers]})
    await send({"type": "http.response.body", "body": body})
