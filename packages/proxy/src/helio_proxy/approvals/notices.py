"""Telling people about tickets: live events, channel notices, failures, resolution records.

Deliveries run in the background so a held call never waits for Slack or a webhook; the notices
of one ticket run in order (a resolution waits for the request's delivery, whose Slack message it
updates). A failed delivery is logged, announced as ``approval_notification_failed`` and recorded
on the ticket, which stays pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

from helio_proxy.approvals.channels import ApprovalChannel, DeliveryError
from helio_proxy.approvals.model import RELEASABLE, Ticket, TicketStatus
from helio_proxy.approvals.tickets import add_notification_failure, load_ticket, set_delivery
from helio_proxy.audit import ApprovalResolutionRecord, Auditor
from helio_proxy.operator.events import EventBus
from helio_proxy.store import Store, parse_time_text, time_text
from helio_proxy.url_display import strip_credentials

log = logging.getLogger("helio_proxy.approvals")

Spawn = Callable[[Awaitable[Any]], "asyncio.Task[Any]"]


class Notices:
    """Events, channel notices and ``approval_resolution`` records for one proxy's tickets."""

    def __init__(
        self,
        store: Store,
        channels: dict[str, ApprovalChannel],
        spawn: Spawn,
        *,
        events: EventBus | None,
        auditor: Auditor | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.channels = channels
        self.events = events
        self.auditor = auditor
        self.clock = clock
        self._spawn = spawn
        self._notifying: dict[str, asyncio.Task[Any]] = {}

    def requested(self, ticket: Ticket) -> None:
        """A new ticket: the live event, then its channel's notice."""
        self.publish("approval_requested", {"ticket": ticket.to_json()})
        self.notify(ticket, [ticket.request.channel], escalation=False)

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(type_, data)

    def resolved(self, ticket: Ticket) -> None:
        """A ticket reached a decision: the event, the audit record, the channels' notices."""
        self.publish("approval_resolved", {"ticket": ticket.to_json()})
        self._record(ticket)
        refs = [ticket.request.channel, *[r for r in ticket.escalated_to if r != ticket.request.channel]]
        self._spawn(self._notify_resolved(ticket, refs))

    def _record(self, ticket: Ticket) -> None:
        if self.auditor is None:
            return
        status: Literal["approved", "denied", "timeout", "cancelled"] = "cancelled"
        if ticket.status in RELEASABLE:
            status = "approved"
        elif ticket.status == TicketStatus.DENIED:
            status = "denied"
        elif ticket.status == TicketStatus.TIMEOUT:
            status = "timeout"
        glass = ticket.break_glass
        metadata: dict[str, Any] = {
            "status": ticket.status.value,
            "kind": ticket.kind,
            "upstream": ticket.upstream,
            "approvers": ticket.approvers,
            "quorum": ticket.request.quorum,
            "matched_rule": ticket.request.matched_rule,
            "wait_ms": None,
        }
        if ticket.resolved_at is not None:
            waited = parse_time_text(ticket.resolved_at) - parse_time_text(ticket.created_at)
            metadata["wait_ms"] = waited.total_seconds() * 1000
        if glass is not None:
            metadata["break_glass"] = {"reason": glass.text, "invoked_by": glass.by}
        try:
            self.auditor.submit(
                ApprovalResolutionRecord(
                    timestamp=self.clock(),
                    ticket_id=ticket.id,
                    tool_name=ticket.tool_name,
                    approval_status=status,
                    approved_by=",".join(ticket.approvers) or None,
                    reason=ticket.resolution_reason,
                    session_id=ticket.session_id,
                    agent_id=ticket.agent_id,
                    environment=self.auditor.environment,
                    config_sha256=ticket.config_sha256,
                    metadata=metadata,
                )
            )
        except Exception:  # an audit failure never fails a decision
            log.exception("approval_resolution record of ticket %s could not be written", ticket.id)

    def notify(self, ticket: Ticket, refs: list[str], *, escalation: bool) -> None:
        previous = self._notifying.get(ticket.id)

        async def deliver() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            for ref in refs:
                channel = self.channels.get(ref)
                if channel is None:
                    await self._failed(ticket, ref, "requested", f"unknown channel {ref!r}")
                    continue
                try:
                    info = await channel.requested(ticket, escalation=escalation)
                except Exception as exc:
                    await self._failed(
                        ticket, ref, "escalated" if escalation else "requested", _describe(exc)
                    )
                    continue
                if info:
                    await self.store.write(set_delivery(ticket.id, ref, info))

        task = self._spawn(deliver())
        self._notifying[ticket.id] = task
        task.add_done_callback(
            lambda t: self._notifying.pop(ticket.id, None) if self._notifying.get(ticket.id) is t else None
        )

    async def _notify_resolved(self, ticket: Ticket, refs: list[str]) -> None:
        """Tell the channels how ``ticket`` was resolved (as it was at that moment; the messages
        to update are read from the store, where the request notices recorded them)."""
        pending = self._notifying.get(ticket.id)
        if pending is not None:
            with contextlib.suppress(Exception):
                await pending
        stored = await self.store.read(load_ticket(ticket.id))
        deliveries = (stored or ticket).deliveries
        for ref in dict.fromkeys(refs):
            channel = self.channels.get(ref)
            if channel is None:
                continue
            try:
                await channel.resolved(ticket, list(deliveries.get(ref, [])))
            except Exception as exc:
                await self._failed(ticket, ref, "resolved", _describe(exc))

    async def _failed(self, ticket: Ticket, ref: str, stage: str, error: str) -> None:
        error = strip_credentials(error)  # shown to viewers, on the event stream and in the log
        log.warning("approval ticket %s: notifying %s failed (%s): %s", ticket.id, ref, stage, error)
        failure = {"channel": ref, "stage": stage, "error": error, "at": time_text(self.clock())}
        self.publish("approval_notification_failed", {"ticket_id": ticket.id, **failure})
        try:
            await self.store.write(add_notification_failure(ticket.id, failure))
        except Exception:
            log.exception("could not record a notification failure on ticket %s", ticket.id)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DeliveryError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
