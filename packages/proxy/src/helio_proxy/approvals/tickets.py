"""The ``approval_tickets`` table: a row per ticket, and the jobs on it.

The ``request`` column holds what was asked (JSON of :class:`~helio_proxy.approvals.model.TicketRequest`)
and never changes; everything else is state. Transitions are single ``UPDATE ... WHERE status IN
(...)`` statements (or a ``SELECT ... FOR UPDATE`` on PostgreSQL where a list grows), so two
proxies on one database can race for a ticket and exactly one wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from helio_proxy.approvals.model import (
    FINAL,
    OPEN,
    RELEASABLE,
    CallKey,
    OperatorDecision,
    Ticket,
    TicketConflict,
    TicketNotFound,
    TicketRequest,
    TicketStatus,
    Verdict,
)
from helio_proxy.policy.drift import canonical_json
from helio_proxy.store import changes
from helio_proxy.store.base import Job, time_text
from helio_proxy.store.tables import APPROVAL_TICKETS

_C = APPROVAL_TICKETS.c


def _json_list(value: str | None) -> list[Any]:
    return cast(list[Any], json.loads(value)) if value else []


def _ticket(row: Mapping[Any, Any]) -> Ticket:
    return Ticket(
        id=row["id"],
        status=TicketStatus(row["status"]),
        kind=row["kind"] or "rule",
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        tool_name=row["tool_name"],
        arguments_digest=row["arguments_digest"],
        request=TicketRequest.from_json(row["request"]),
        session_id=row["session_id"],
        agent_id=row["agent_id"],
        config_sha256=row["config_sha256"],
        upstream=row["upstream"],
        decisions=tuple(OperatorDecision.from_json(d) for d in _json_list(row["decisions"])),
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        resolution_reason=row["resolution_reason"],
        escalated_at=row["escalated_at"],
        escalated_to=tuple(str(n) for n in _json_list(row["escalated_to"])),
        deliveries=cast(dict[str, list[Any]], json.loads(row["deliveries"])) if row["deliveries"] else {},
        notification_failures=tuple(_json_list(row["notification_failures"])),
        holder=row["holder"],
        holder_seen_at=row["holder_seen_at"],
        consumed_at=row["consumed_at"],
    )


def _one(conn: Connection, ticket_id: str, *, lock: bool = False) -> Ticket | None:
    query = select(APPROVAL_TICKETS).where(_C.id == ticket_id)
    if lock:
        query = query.with_for_update()  # PostgreSQL; SQLite's writer already holds the file lock
    row = conn.execute(query).mappings().first()
    return _ticket(row) if row is not None else None


def _values(states: Iterable[TicketStatus]) -> list[str]:
    return [s.value for s in states]


# -- jobs ------------------------------------------------------------------------------------------


def create_ticket(ticket: Ticket, max_open: int | None = None) -> Job[Ticket | None]:
    """Insert a new ticket (pending, held by ``ticket.holder``).

    ``max_open``: insert nothing and answer ``None`` when the store already has that many open
    tickets (pending or orphaned, not yet expired at ``ticket.created_at``), counted in the same
    transaction as the insert."""

    def job(conn: Connection) -> Ticket | None:
        if max_open is not None:
            open_now = and_(_C.status.in_(_values(OPEN)), _C.expires_at > ticket.created_at)
            count = select(func.count()).select_from(APPROVAL_TICKETS).where(open_now)
            if int(conn.execute(count).scalar_one()) >= max_open:
                return None
        conn.execute(
            insert(APPROVAL_TICKETS).values(
                id=ticket.id,
                status=ticket.status.value,
                kind=ticket.kind,
                created_at=ticket.created_at,
                expires_at=ticket.expires_at,
                session_id=ticket.session_id,
                agent_id=ticket.agent_id,
                tool_name=ticket.tool_name,
                arguments_digest=ticket.arguments_digest,
                config_sha256=ticket.config_sha256,
                upstream=ticket.upstream,
                request=ticket.request.to_json(),
                decisions="[]",
                holder=ticket.holder,
                holder_seen_at=ticket.holder_seen_at,
            )
        )
        return ticket

    return job


def load_ticket(ticket_id: str) -> Job[Ticket | None]:
    def job(conn: Connection) -> Ticket | None:
        return _one(conn, ticket_id)

    return job


def list_tickets(status: str | None, limit: int, offset: int) -> Job[tuple[list[Ticket], int]]:
    """A page of tickets, newest first, and how many match in all."""

    def job(conn: Connection) -> tuple[list[Ticket], int]:
        where = _C.status == status if status else None
        count = select(func.count()).select_from(APPROVAL_TICKETS)
        query = select(APPROVAL_TICKETS).order_by(_C.created_at.desc(), _C.id).limit(limit).offset(offset)
        if where is not None:
            count = count.where(where)
            query = query.where(where)
        total = int(conn.execute(count).scalar_one())
        return [_ticket(row) for row in conn.execute(query).mappings()], total

    return job


def ticket_statuses(ids: Sequence[str]) -> Job[dict[str, TicketStatus]]:
    """The status of each ticket (the cheap query the poller runs for the calls it holds)."""

    def job(conn: Connection) -> dict[str, TicketStatus]:
        rows = conn.execute(select(_C.id, _C.status).where(_C.id.in_(list(ids))))
        return {str(i): TicketStatus(s) for i, s in rows}

    return job


def transition(ticket_id: str, from_: Iterable[TicketStatus], to: TicketStatus, **values: Any) -> Job[bool]:
    """Move a ticket from one of ``from_`` to ``to`` (setting ``values``); ``False`` if it was not in ``from_``."""

    def job(conn: Connection) -> bool:
        result = conn.execute(
            update(APPROVAL_TICKETS)
            .where(_C.id == ticket_id, _C.status.in_(_values(from_)))
            .values(status=to.value, **values)
        )
        return result.rowcount == 1

    return job


def consume(ticket_id: str, holder: str | None, at: datetime) -> Job[bool]:
    """Take an approved ticket's one release. ``holder``: the proxy holding the call, which may
    also take it after a sweep released it (``None``: a retry, which may only take a ticket nobody
    holds)."""

    def job(conn: Connection) -> bool:
        owner = _C.holder.is_(None) if holder is None else or_(_C.holder == holder, _C.holder.is_(None))
        result = conn.execute(
            update(APPROVAL_TICKETS)
            .where(_C.id == ticket_id, _C.status.in_(_values(RELEASABLE)), owner)
            .values(status=TicketStatus.CONSUMED.value, consumed_at=time_text(at))
        )
        return result.rowcount == 1

    return job


def _same_call(key: CallKey) -> Any:
    sha = _C.config_sha256.is_(None) if key.config_sha256 is None else _C.config_sha256 == key.config_sha256
    upstream = _C.upstream.is_(None) if key.upstream is None else _C.upstream == key.upstream
    return and_(
        _C.session_id == key.session_id,
        upstream,
        _C.tool_name == key.tool_name,
        _C.arguments_digest == key.arguments_digest,
        _C.kind == key.kind,
        sha,
    )


def claim_retry(key: CallKey, now: datetime) -> Job[Ticket | None]:
    """An approved, unexpired ticket of the same call that nobody holds, consumed by this retry."""

    def job(conn: Connection) -> Ticket | None:
        query = (
            select(APPROVAL_TICKETS)
            .where(
                _same_call(key),
                _C.status.in_(_values(RELEASABLE)),
                _C.holder.is_(None),
                _C.expires_at > time_text(now),
            )
            .order_by(_C.created_at)
        )
        for row in conn.execute(query).mappings().all():
            if consume(row["id"], None, now)(conn):
                return _ticket({**row, "status": TicketStatus.CONSUMED.value, "consumed_at": time_text(now)})
        return None

    return job


def adopt_orphan(key: CallKey, holder: str, now: datetime) -> Job[Ticket | None]:
    """An orphaned, unexpired ticket of the same call, held again by ``holder`` (the agent retried
    before anyone decided): one ticket, one decision."""

    def job(conn: Connection) -> Ticket | None:
        query = (
            select(APPROVAL_TICKETS)
            .where(_same_call(key), _C.status == TicketStatus.ORPHANED.value, _C.expires_at > time_text(now))
            .order_by(_C.created_at)
        )
        for row in conn.execute(query).mappings().all():
            seen = time_text(now)
            if transition(
                row["id"], [TicketStatus.ORPHANED], TicketStatus.PENDING, holder=holder, holder_seen_at=seen
            )(conn):
                return _ticket(
                    {**row, "status": TicketStatus.PENDING.value, "holder": holder, "holder_seen_at": seen}
                )
        return None

    return job


def decide(ticket_id: str, verdict: Verdict, now: datetime) -> Job[tuple[Ticket, bool]]:
    """Record an operator's verdict; return the ticket after it and whether it is now resolved.

    Raises :class:`TicketNotFound`, or :class:`TicketConflict` when the ticket is no longer open,
    has expired, or ``verdict.by`` already approved it.
    """

    def job(conn: Connection) -> tuple[Ticket, bool]:
        ticket = _one(conn, ticket_id, lock=True)
        if ticket is None:
            raise TicketNotFound(ticket_id)
        if ticket.status not in OPEN:
            raise TicketConflict(f"ticket {ticket_id} is already {ticket.status.value}")
        if ticket.expired(now):
            raise TicketConflict(f"ticket {ticket_id} expired at {ticket.expires_at}")
        if verdict.verdict == "approve" and verdict.by in ticket.approvers:
            need = ticket.request.quorum - len(ticket.approvers)
            raise TicketConflict(
                f"{verdict.by} already approved ticket {ticket_id}; "
                f"{need} more approval(s) from other operators needed"
            )
        at = time_text(now)
        decisions = [
            *ticket.decisions,
            OperatorDecision(verdict.by, verdict.verdict, at, verdict.text, verdict.via),
        ]
        values: dict[str, Any] = {"decisions": json.dumps([d.to_json() for d in decisions])}
        resolved = True
        match verdict.verdict:
            case "deny":
                status, values["resolved_by"], values["resolution_reason"] = (
                    TicketStatus.DENIED,
                    verdict.by,
                    verdict.text,
                )
            case "break_glass":
                status, values["resolved_by"], values["resolution_reason"] = (
                    TicketStatus.BREAK_GLASS,
                    verdict.by,
                    verdict.text,
                )
            case _:
                approvers = [*ticket.approvers, verdict.by]
                resolved = len(approvers) >= ticket.request.quorum
                status = TicketStatus.APPROVED if resolved else ticket.status
                if resolved:
                    values["resolved_by"] = ",".join(approvers)
        if resolved:
            values["resolved_at"] = at
        conn.execute(update(APPROVAL_TICKETS).where(_C.id == ticket_id).values(status=status.value, **values))
        if resolved:
            # The proxy holding the call (maybe another replica) wakes on the change bus.
            changes.publish(conn, changes.APPROVAL_RESOLVED, {"ticket": ticket_id})
        after = _one(conn, ticket_id)
        assert after is not None
        return after, resolved

    return job


def _append(ticket_id: str, column: str, item: Any) -> Job[None]:
    def job(conn: Connection) -> None:
        current = conn.execute(
            select(APPROVAL_TICKETS.c[column]).where(_C.id == ticket_id).with_for_update()
        ).scalar_one_or_none()
        items = [*_json_list(current), item]
        conn.execute(update(APPROVAL_TICKETS).where(_C.id == ticket_id).values({column: json.dumps(items)}))

    return job


def add_notification_failure(ticket_id: str, failure: Mapping[str, Any]) -> Job[None]:
    return _append(ticket_id, "notification_failures", dict(failure))


def set_delivery(ticket_id: str, channel: str, info: Mapping[str, Any]) -> Job[None]:
    """Remember what a channel's delivery returned (to update its message on resolution)."""

    def job(conn: Connection) -> None:
        current = conn.execute(
            select(_C.deliveries).where(_C.id == ticket_id).with_for_update()
        ).scalar_one_or_none()
        deliveries = cast(dict[str, list[Any]], json.loads(current)) if current else {}
        deliveries.setdefault(channel, []).append(dict(info))
        conn.execute(
            update(APPROVAL_TICKETS).where(_C.id == ticket_id).values(deliveries=json.dumps(deliveries))
        )

    return job


def mark_escalated(ticket_id: str, at: datetime, to: Sequence[str]) -> Job[bool]:
    """Record an escalation of a still-pending ticket (``False`` when it was decided meanwhile)."""

    def job(conn: Connection) -> bool:
        result = conn.execute(
            update(APPROVAL_TICKETS)
            .where(_C.id == ticket_id, _C.status.in_(_values(OPEN)), _C.escalated_at.is_(None))
            .values(escalated_at=time_text(at), escalated_to=json.dumps(list(to)))
        )
        return result.rowcount == 1

    return job


def release_holder(ticket_id: str, holder: str) -> Job[bool]:
    """The held request is gone but the question stays open: a pending ticket becomes orphaned;
    an approved one stays approved, for the agent's retry. ``False`` if ``holder`` held nothing."""

    def job(conn: Connection) -> bool:
        owned = and_(_C.id == ticket_id, _C.holder == holder)
        orphaned = conn.execute(
            update(APPROVAL_TICKETS)
            .where(owned, _C.status == TicketStatus.PENDING.value)
            .values(status=TicketStatus.ORPHANED.value, holder=None)
        ).rowcount
        released = conn.execute(update(APPROVAL_TICKETS).where(owned).values(holder=None)).rowcount
        return orphaned + released == 1

    return job


def heartbeat(ids: Sequence[str], holder: str, now: datetime) -> Job[None]:
    """Tell other proxies this one still holds these tickets' calls."""

    def job(conn: Connection) -> None:
        conn.execute(
            update(APPROVAL_TICKETS)
            .where(_C.id.in_(list(ids)), _C.holder == holder)
            .values(holder_seen_at=time_text(now))
        )

    return job


def redact_requests(scrub: Callable[[dict[str, Any]], Any]) -> Job[int]:
    """Rewrite every stored ticket whose arguments ``scrub`` changes (tickets written by a version
    that kept them in clear, or before a pattern was added to ``audit.redact``); how many changed.
    The ``arguments_digest`` is left as it is: it still binds the original call."""

    def job(conn: Connection) -> int:
        changed = 0
        for ticket_id, text in conn.execute(select(_C.id, _C.request)).all():
            request = TicketRequest.from_json(text)
            arguments = request.tool_input
            scrubbed = scrub(arguments)
            if scrubbed == arguments:
                continue
            redacted = replace(request, tool_input_json=canonical_json(scrubbed).decode())
            conn.execute(
                update(APPROVAL_TICKETS).where(_C.id == ticket_id).values(request=redacted.to_json())
            )
            changed += 1
        return changed

    return job


@dataclass(frozen=True, slots=True)
class SweepResult:
    orphaned: int
    expired: list[str]
    deleted: int


def sweep(now: datetime, stale_before: datetime, delete_before: datetime | None) -> Job[SweepResult]:
    """Housekeeping every proxy runs now and then.

    * tickets whose holder stopped heartbeating before ``stale_before`` lose it (a pending one
      becomes orphaned; an approved one waits for the agent's retry);
    * orphaned tickets past their expiry time out (nobody waits for them);
    * resolved tickets older than ``delete_before`` (the audit retention) are deleted.
    """

    def job(conn: Connection) -> SweepResult:
        stale = and_(
            _C.holder.is_not(None),
            or_(_C.holder_seen_at.is_(None), _C.holder_seen_at < time_text(stale_before)),
        )
        orphaned = conn.execute(
            update(APPROVAL_TICKETS)
            .where(stale, _C.status == TicketStatus.PENDING.value)
            .values(status=TicketStatus.ORPHANED.value, holder=None)
        ).rowcount
        conn.execute(update(APPROVAL_TICKETS).where(stale).values(holder=None))
        at = time_text(now)
        expired = [
            str(i)
            for (i,) in conn.execute(
                select(_C.id).where(_C.status == TicketStatus.ORPHANED.value, _C.expires_at <= at)
            )
        ]
        if expired:
            conn.execute(
                update(APPROVAL_TICKETS)
                .where(_C.id.in_(expired), _C.status == TicketStatus.ORPHANED.value)
                .values(status=TicketStatus.TIMEOUT.value, resolved_at=at, resolution_reason="timeout")
            )
        deleted = 0
        if delete_before is not None:
            cutoff = time_text(delete_before)
            deleted = conn.execute(
                APPROVAL_TICKETS.delete().where(
                    _C.created_at < cutoff, or_(_C.status.in_(_values(FINAL)), _C.expires_at < cutoff)
                )
            ).rowcount
        return SweepResult(orphaned, expired, deleted)

    return job
