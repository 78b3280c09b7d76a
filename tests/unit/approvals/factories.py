"""A ticket to test with (not yet stored)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from helio_proxy.approvals.model import Ticket, TicketRequest, TicketStatus, arguments_digest
from helio_proxy.policy.drift import canonical_json
from helio_proxy.store import time_text

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ARGS = {"amount": 10, "to": {"iban": "X"}}


def ticket(
    *, quorum: int = 1, holder: str | None = "proxy-a", session: str = "s1", **changes: object
) -> Ticket:
    request = TicketRequest(
        tool_input_json=canonical_json(ARGS).decode(),
        matched_rule="approve",
        rule_index=0,
        channel="dashboard",
        timeout_ms=300_000,
        quorum=quorum,
        on_timeout="deny",
        reason="rule_matched",
    )
    base = Ticket(
        id=str(uuid.uuid4()),
        status=TicketStatus.PENDING,
        kind="rule",
        created_at=time_text(NOW),
        expires_at=time_text(NOW + timedelta(minutes=5)),
        tool_name="pay",
        arguments_digest=arguments_digest(ARGS),
        request=request,
        session_id=session,
        config_sha256="c" * 64,
        holder=holder,
        holder_seen_at=time_text(NOW),
    )
    return Ticket(**{**{f: getattr(base, f) for f in Ticket.__slots__}, **changes})  # type: ignore[arg-type]
