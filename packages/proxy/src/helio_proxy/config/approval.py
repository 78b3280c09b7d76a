"""``approval``: how held calls reach humans."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from helio_proxy.config.base import ConfigModel, Secret
from helio_proxy.config.durations import Duration, DurationField


class DashboardChannel(ConfigModel):
    """Tickets appear in the dashboard and the REST API (always available)."""

    type: Literal["dashboard"]
    """Channel type."""
    name: str | None = None
    """Name other settings use to refer to this channel."""


class WebhookChannel(ConfigModel):
    """Tickets are POSTed to a URL; the receiver answers through the REST API."""

    type: Literal["webhook"]
    """Channel type."""
    name: str | None = None
    """Name other settings use to refer to this channel."""

    url: str = Field(pattern=r"^https?://\S+$")
    """Where tickets are POSTed."""

    secret: Secret[str | None] = None
    """HMAC-SHA256 key for the ``X-Helio-Signature`` header."""


class SlackChannel(ConfigModel):
    """Tickets are posted to Slack with Approve/Deny buttons."""

    type: Literal["slack"]
    """Channel type."""
    name: str | None = None
    """Name other settings use to refer to this channel."""

    bot_token: Secret[str]
    """Slack bot token (``xoxb-...``); use ``${VAR}``."""

    signing_secret: Secret[str]
    """Slack signing secret for verifying button callbacks; use ``${VAR}``."""

    channel: str
    """Slack channel id or name to post to."""

    approvers: list[str] = Field(default_factory=list[str])
    """Slack user ids (``U...``) allowed to press Approve/Deny; empty allows anyone in the channel."""

    api_base: str = Field(default="https://slack.com/api", pattern=r"^https?://\S+$")
    """Base URL of the Slack Web API (change it only to point at a test double)."""


Channel = Annotated[DashboardChannel | WebhookChannel | SlackChannel, Field(discriminator="type")]


class ApprovalConfig(ConfigModel):
    """Approval defaults and channels."""

    timeout: DurationField = Duration("300s")
    """How long a held call waits for a decision."""

    default_on_timeout: Literal["deny", "allow"] = "deny"
    """Outcome when nobody decides in time (budget tickets always deny)."""

    channels: list[Channel] = Field(default_factory=list[Channel])
    """Notification channels; referenced by ``name``, or by ``type`` when unnamed."""

    quorum: int = Field(default=1, ge=1)
    """Distinct operators who must approve a ticket (M-of-N); any one denial denies it."""

    max_pending: int = Field(default=1000, gt=0)
    """Open tickets (pending or orphaned) the store holds at once, counted over every proxy on it; a
    call that would open one more is blocked with ``approval_capacity_exhausted`` (retry allowed)."""
