"""The ``dashboard`` channel: always available, nothing to send.

Every ticket, whatever its channel, is listed by ``GET /api/approvals`` and announced on the
dashboard's live stream (``approval_requested`` / ``approval_resolved``); operators answer
through the REST API. So this channel's deliveries are no-ops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helio_proxy.approvals.channels import ChannelContext
from helio_proxy.approvals.model import Ticket
from helio_proxy.config.approval import DashboardChannel


class DashboardNotifier:
    def __init__(self, config: DashboardChannel, context: ChannelContext) -> None:
        self.ref = config.name or config.type

    async def requested(self, ticket: Ticket, *, escalation: bool) -> Mapping[str, Any] | None:
        return None

    async def resolved(self, ticket: Ticket, deliveries: list[Mapping[str, Any]]) -> None:
        return None
