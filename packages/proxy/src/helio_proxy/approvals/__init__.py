"""Approval workflows: durable tickets bound to the exact call, channels, quorum, break-glass.

:class:`ApprovalService` is the gateway's approval gate; :func:`approval_routes` its REST API on
the dashboard port; :class:`SlackActions` the Slack button callback on the MCP port.
"""

from helio_proxy.approvals.api import approval_routes
from helio_proxy.approvals.channels import (
    ApprovalChannel,
    ChannelContext,
    DeliveryError,
    build_channels,
    register_channel,
)
from helio_proxy.approvals.model import (
    Ticket,
    TicketConflict,
    TicketNotFound,
    TicketStatus,
    Verdict,
    arguments_digest,
)
from helio_proxy.approvals.service import ApprovalService
from helio_proxy.approvals.slack_actions import SLACK_ACTIONS_PATH, SlackActions

__all__ = [
    "SLACK_ACTIONS_PATH",
    "ApprovalChannel",
    "ApprovalService",
    "ChannelContext",
    "DeliveryError",
    "SlackActions",
    "Ticket",
    "TicketConflict",
    "TicketNotFound",
    "TicketStatus",
    "Verdict",
    "approval_routes",
    "arguments_digest",
    "build_channels",
    "register_channel",
]
