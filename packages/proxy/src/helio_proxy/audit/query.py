"""Searching the audit trail (the dashboard's ``/api/audit`` and ``helio export`` share this).

Filters combine with AND: ``tool`` and ``origin`` are case-insensitive substrings, ``since`` and
``until`` bound ``timestamp`` (inclusive, exclusive), ``blocked`` means "has a block reason".
Pages are ordered by sequence number, newest first unless asked otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Connection, Select, func, select

from helio_proxy.audit.rows import decode_row
from helio_proxy.store.base import Store, time_text
from helio_proxy.store.tables import AUDIT_RECORDS

MAX_PAGE: Final = 10_000
"""Largest page (and export) a single query returns."""

_C = AUDIT_RECORDS.c


class AuditFilter(BaseModel):
    """Which records to return; unset fields do not filter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: str | None = None
    decision: str | None = None
    reason: str | None = None
    blocked: bool | None = None
    session: str | None = None
    agent: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    upstream_status_min: int | None = None
    upstream_status_max: int | None = None
    record_kind: str | None = None
    destructive: bool | None = None
    dry_run: bool | None = None
    origin: str | None = None


class AuditPage(BaseModel):
    """One page of records (decoded: JSON columns are objects) and the total that matched."""

    model_config = ConfigDict(frozen=True)

    records: list[dict[str, Any]] = Field(default_factory=list[dict[str, Any]])
    total: int
    limit: int
    offset: int


def _contains(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def conditions(where: AuditFilter) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if where.tool:
        out.append(_C.tool_name.ilike(_contains(where.tool), escape="\\"))
    if where.origin:
        out.append(_C.origin.ilike(_contains(where.origin), escape="\\"))
    if where.decision:
        out.append(_C.policy_decision == where.decision)
    if where.reason:
        out.append(_C.block_reason == where.reason)
    if where.blocked is not None:
        out.append(_C.block_reason.is_not(None) if where.blocked else _C.block_reason.is_(None))
    if where.session:
        out.append(_C.session_id == where.session)
    if where.agent:
        out.append(_C.agent_id == where.agent)
    if where.since is not None:
        out.append(_C.timestamp >= time_text(where.since))
    if where.until is not None:
        out.append(_C.timestamp < time_text(where.until))
    if where.upstream_status_min is not None:
        out.append(_C.upstream_http_status >= where.upstream_status_min)
    if where.upstream_status_max is not None:
        out.append(_C.upstream_http_status <= where.upstream_status_max)
    if where.record_kind:
        out.append(_C.record_kind == where.record_kind)
    if where.destructive is not None:
        out.append(_C.flagged_destructive.is_(where.destructive))
    if where.dry_run is not None:
        out.append(_C.dry_run.is_(where.dry_run))
    return out


def _select(where: AuditFilter) -> Select[Any]:
    return select(AUDIT_RECORDS).where(*conditions(where))


def fetch(
    conn: Connection,
    where: AuditFilter,
    *,
    limit: int = 100,
    offset: int = 0,
    order: Literal["newest", "oldest"] = "newest",
) -> list[dict[str, Any]]:
    """Matching records, decoded. ``oldest`` returns the newest ``limit`` records, oldest first."""
    limit = max(0, min(limit, MAX_PAGE))
    newest_first = _select(where).order_by(_C.seq.desc()).limit(limit).offset(offset)
    rows = [decode_row(row._mapping) for row in conn.execute(newest_first)]  # pyright: ignore[reportPrivateUsage]
    if order == "oldest":
        rows.reverse()
    return rows


def after(
    conn: Connection, where: AuditFilter, seq: int, *, upto: int | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Matching records with ``seq < record seq <= upto``, oldest first (``helio audit tail --follow``)."""
    query = _select(where).where(_C.seq > seq)
    if upto is not None:
        query = query.where(_C.seq <= upto)
    query = query.order_by(_C.seq).limit(max(0, min(limit, MAX_PAGE)))
    return [decode_row(row._mapping) for row in conn.execute(query)]  # pyright: ignore[reportPrivateUsage]


def last_seq(conn: Connection) -> int:
    """The highest sequence number written so far (0 for an empty trail)."""
    return int(conn.execute(select(func.coalesce(func.max(_C.seq), 0))).scalar_one())


def count(conn: Connection, where: AuditFilter) -> int:
    query = select(func.count()).select_from(AUDIT_RECORDS).where(*conditions(where))
    return int(conn.execute(query).scalar_one())


async def search(store: Store, where: AuditFilter, *, limit: int = 100, offset: int = 0) -> AuditPage:
    """A page of matching records, newest first, with the total count."""

    def job(conn: Connection) -> AuditPage:
        records = fetch(conn, where, limit=limit, offset=offset)
        return AuditPage(records=records, total=count(conn, where), limit=limit, offset=offset)

    return await store.read(job)
