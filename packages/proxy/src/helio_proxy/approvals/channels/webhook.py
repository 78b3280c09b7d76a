"""The ``webhook`` channel: tickets POSTed as JSON to the operator's own system.

Bodies are ``{"event": "approval_requested", "ticket": {...}, "escalation": bool}`` when a ticket
is requested (and again at escalation) and ``{"event": "approval_resolved", "ticket": {...}}``
once it is decided. The receiver decides through the REST API on the dashboard port.

Credentials in the URL (``https://user:pass@host/...``) are sent as a Basic ``Authorization``
header, as an HTTP client would; wherever the proxy names the webhook it shows only the URL's
scheme, host and port (:func:`~helio_proxy.url_display.display_url`).

With ``secret`` set, each request carries ``X-Helio-Signature: t=<unix seconds>,v1=<hex>``
where ``<hex>`` is HMAC-SHA256 keyed with the secret over ``"<t>.<raw body>"``. Receivers
recompute it, compare in constant time and reject timestamps older than a few minutes (replays).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from helio_proxy import __version__
from helio_proxy.approvals.channels import ChannelContext
from helio_proxy.approvals.model import Ticket
from helio_proxy.config.approval import WebhookChannel
from helio_proxy.url_display import display_url

SIGNATURE_HEADER: Final = "X-Helio-Signature"
SIGNATURE_TOLERANCE: Final = 300
"""Seconds a receiver should accept a signature's timestamp for (what :func:`verify` uses)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Helio-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str | None, body: bytes, *, now: float | None = None) -> bool:
    """Whether ``header`` is a valid signature of ``body`` within :data:`SIGNATURE_TOLERANCE`."""
    if not header:
        return False
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or not given:
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > SIGNATURE_TOLERANCE:
        return False
    expected = sign(secret, int(stamp), body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def _split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@``, and the Basic ``Authorization`` value they stand for.

    Sent as a header they reach the receiver as before, while the URL the HTTP client holds (and
    may log or quote in an error) carries no credentials.
    """
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    userpass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, "Basic " + base64.b64encode(userpass.encode()).decode()


class WebhookNotifier:
    def __init__(
        self, config: WebhookChannel, context: ChannelContext, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.ref = config.name or config.type
        self.url, self.authorization = _split_credentials(config.url)
        self.secret = config.secret
        self.context = context
        self.clock = clock
        # The URL may embed credentials or a token: messages show its scheme, host and port only.
        self.description = f"webhook {self.ref!r} ({display_url(config.url)})"

    async def requested(self, ticket: Ticket, *, escalation: bool) -> Mapping[str, Any] | None:
        await self._post(
            {"event": "approval_requested", "ticket": ticket.to_json(), "escalation": escalation}
        )
        return None

    async def resolved(self, ticket: Ticket, deliveries: list[Mapping[str, Any]]) -> None:
        await self._post({"event": "approval_resolved", "ticket": ticket.to_json()})

    async def _post(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()

        def request() -> httpx.Request:
            headers = {"content-type": "application/json", "user-agent": f"helio-proxy/{__version__}"}
            if self.authorization:
                headers["authorization"] = self.authorization
            if self.secret:
                headers[SIGNATURE_HEADER] = sign(self.secret, int(self.clock()), body)
            return self.context.http.build_request(
                "POST", self.url, content=body, headers=headers, timeout=self.context.timeout
            )

        await self.context.send(self.description, request)
