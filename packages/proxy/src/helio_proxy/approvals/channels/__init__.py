"""How tickets reach humans: one module per channel type, registered by the config's ``type:``.

A channel is told when a ticket is requested (again at escalation) and when it is resolved. A
delivery that fails raises :class:`DeliveryError`; the service logs it, emits
``approval_notification_failed`` and records it on the ticket, which stays pending. The
built-in ``dashboard``, ``webhook`` and ``slack`` channels register the way a third-party one
would (:func:`register_channel`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import httpx

from helio_proxy.approvals.model import Ticket
from helio_proxy.config.approval import ApprovalConfig, DashboardChannel
from helio_proxy.url_display import strip_credentials

DELIVERY_ATTEMPTS: Final = 3
"""Attempts per outbound HTTP delivery (webhook POST, Slack API call)."""
DELIVERY_TIMEOUT: Final = 5.0
"""Seconds each attempt may take."""
DELIVERY_BACKOFF: Final = 0.5
"""Seconds before the second attempt; doubled before each later one."""


class DeliveryError(Exception):
    """A channel could not deliver a notice (after its retries)."""


class ApprovalChannel(Protocol):
    """A way of telling humans about tickets."""

    ref: str
    """How rules refer to it: its ``name``, or its ``type`` when unnamed."""

    async def requested(self, ticket: Ticket, *, escalation: bool) -> Mapping[str, Any] | None:
        """Announce a pending ticket; return what :meth:`resolved` needs later (or ``None``)."""
        ...

    async def resolved(self, ticket: Ticket, deliveries: list[Mapping[str, Any]]) -> None:
        """Tell the channel the ticket was decided (``deliveries``: what :meth:`requested` returned)."""
        ...


@dataclass(frozen=True, slots=True)
class ChannelContext:
    """What channels share: the outbound HTTP client and its retry pacing."""

    http: httpx.AsyncClient
    attempts: int = DELIVERY_ATTEMPTS
    timeout: float = DELIVERY_TIMEOUT
    backoff: float = DELIVERY_BACKOFF

    async def send(self, description: str, request: Callable[[], httpx.Request]) -> httpx.Response:
        """Send ``request()`` (rebuilt per attempt, e.g. to re-sign it) until a 2xx answer.

        Network errors, timeouts, 408, 429 and 5xx are retried with exponential backoff; any
        other status fails at once. Raises :class:`DeliveryError` with the last problem.
        """
        problem, attempt = "not attempted", 0
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await self.http.send(request())
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if response.is_success:
                return response
            problem = f"HTTP {response.status_code}"
            if response.status_code not in (408, 429) and response.status_code < 500:
                break
        # An HTTP library's message may quote the URL it was given: never its credentials.
        raise DeliveryError(strip_credentials(f"{description}: {problem} (after {attempt + 1} attempt(s))"))


ChannelFactory = Callable[[Any, ChannelContext], ApprovalChannel]
"""Builds a channel from its config model."""

_REGISTRY: dict[str, ChannelFactory] = {}


def register_channel(type_: str, factory: ChannelFactory) -> None:
    """Make channel ``type_`` available to ``approval.channels``."""
    _REGISTRY[type_] = factory


def channel_types() -> list[str]:
    return sorted(_REGISTRY)


def build_channels(config: ApprovalConfig, context: ChannelContext) -> dict[str, ApprovalChannel]:
    """Every configured channel by reference, plus the dashboard, which is always there."""
    out: dict[str, ApprovalChannel] = {}
    for channel in config.channels:
        out[channel.name or channel.type] = _REGISTRY[channel.type](channel, context)
    if "dashboard" not in out:
        out["dashboard"] = _REGISTRY["dashboard"](DashboardChannel(type="dashboard"), context)
    return out


def _register_builtins() -> None:
    from helio_proxy.approvals.channels import dashboard, slack, webhook

    register_channel("dashboard", dashboard.DashboardNotifier)
    register_channel("webhook", webhook.WebhookNotifier)
    register_channel("slack", slack.SlackNotifier)


_register_builtins()
