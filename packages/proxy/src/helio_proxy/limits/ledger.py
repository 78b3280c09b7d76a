"""The durable side of limits and budgets: store jobs over ``limit_buckets``, ``limit_events``,
``budget_meta`` and ``budget_events``.

Every charge is a row: ``limit_events`` for a rule's rate or spend limit, ``budget_events`` (the
exportable ledger) for a budget. A bucket holds the rows younger than its window, so a restart
loses nothing and every proxy on one PostgreSQL database sees the same buckets.

:func:`reserve` is one write transaction, all or nothing over every bucket a call feeds:

1. resolve each budget's epoch (``budget_meta``; a new fingerprint starts the next epoch);
2. lock each bucket's ``limit_buckets`` row in key order (``SELECT ... FOR UPDATE`` on
   PostgreSQL, so replicas take turns and never deadlock; SQLite's single writer, which begins
   ``IMMEDIATE``, already serializes);
3. read what each bucket holds now (reserved rows included: a call in flight already counts);
4. if every charge fits, insert one row per bucket. Nothing is read before the lock and written
   after it, so two proxies can never both take the last slot.

:func:`release` deletes a reservation's rows (the call never reached the upstream).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Insert, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from helio_proxy.limits.charges import Bucket, Charge
from helio_proxy.limits.windows import Entry, Usage, Window, live, usage_of
from helio_proxy.store.base import parse_time_text, time_text
from helio_proxy.store.tables import BUDGET_EVENTS, BUDGET_META, LIMIT_BUCKETS, LIMIT_EVENTS


@dataclass(frozen=True, slots=True)
class Check:
    """One charge against what its bucket held when the call was checked."""

    charge: Charge
    usage: Usage
    """The bucket before this call."""

    @property
    def fits(self) -> bool:
        return self.usage.total + self.charge.amount <= self.charge.limit


@dataclass(frozen=True, slots=True)
class BucketView:
    """A bucket as the ledger last saw it (the proxy's local view, used for dry runs)."""

    bucket: Bucket
    window: Window
    started_at: datetime
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Reserved:
    """The outcome of :func:`reserve`."""

    checks: tuple[Check, ...]
    """Every charge, with its bucket's content before the call (budgets with their epoch)."""
    taken: bool
    """Rows were inserted (every charge fit, or was approved over its budget)."""
    limit_event_ids: tuple[str, ...] = ()
    budget_event_ids: tuple[str, ...] = ()
    views: tuple[BucketView, ...] = ()
    epochs: dict[str, int] = field(default_factory=dict[str, int])


def breaches(checks: Iterable[Check], *, approved: bool) -> list[Check]:
    """Checks that block the call (an approved call is let over its waivable budgets)."""
    return [c for c in checks if not c.fits and not (approved and c.charge.waivable)]


def _insert(conn: Connection, table: Table) -> Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    return insert(table)


def _ignore_duplicate(conn: Connection, table: Table, key: str, values: dict[str, Any]) -> None:
    statement = _insert(conn, table).values(**values)
    if isinstance(statement, postgresql.Insert | sqlite.Insert):
        conn.execute(statement.on_conflict_do_nothing(index_elements=[key]))
    else:  # pragma: no cover - only SQLite and PostgreSQL are registered
        if conn.execute(select(table.c[key]).where(table.c[key] == values[key])).first() is None:
            conn.execute(statement)


def ensure_epoch(conn: Connection, name: str, fingerprint: str, now: str) -> int:
    """The budget's current epoch, starting the next one if its fingerprint changed (or it was retired)."""
    meta = BUDGET_META.c
    _ignore_duplicate(
        conn, BUDGET_META, "name", {"name": name, "epoch": 1, "fingerprint": fingerprint, "updated_at": now}
    )
    # Re-evaluated after a concurrent update commits (PostgreSQL), so replicas bump an epoch once.
    conn.execute(
        update(BUDGET_META)
        .where(meta.name == name, or_(meta.fingerprint != fingerprint, meta.retired_at.is_not(None)))
        .values(epoch=meta.epoch + 1, fingerprint=fingerprint, updated_at=now, retired_at=None)
    )
    return int(conn.execute(select(meta.epoch).where(meta.name == name)).scalar_one())


def reconcile(conn: Connection, budgets: Sequence[tuple[str, str]], now: datetime) -> dict[str, int]:
    """Epochs for the configured ``(name, fingerprint)`` budgets; budgets no longer configured retire."""
    stamp = time_text(now)
    epochs = {name: ensure_epoch(conn, name, fp, stamp) for name, fp in budgets}
    meta = BUDGET_META.c
    names = [name for name, _ in budgets]
    conn.execute(
        update(BUDGET_META)
        .where(meta.retired_at.is_(None), meta.name.not_in(names) if names else meta.name.is_not(None))
        .values(retired_at=stamp, updated_at=stamp)
    )
    return epochs


def _lock_bucket(conn: Connection, bucket: Bucket, window: Window, now: datetime) -> datetime:
    """Create the bucket's row if new, lock it, and return when its pot started."""
    stamp = time_text(now)
    rows = LIMIT_BUCKETS.c
    _ignore_duplicate(
        conn,
        LIMIT_BUCKETS,
        "bucket_key",
        {
            "bucket_key": bucket.key,
            "kind": bucket.kind,
            "owner": bucket.owner,
            "version": bucket.version,
            "scope": bucket.scope,
            "subject": bucket.subject,
            "started_at": stamp,
            "last_activity": stamp,
        },
    )
    row = conn.execute(
        select(rows.started_at, rows.last_activity).where(rows.bucket_key == bucket.key).with_for_update()
    ).one()
    started = str(row.started_at)
    idle = window.idle_since(now)
    if idle is not None and str(row.last_activity) <= time_text(idle) and started < stamp:
        # A session pot idle for idle_ttl starts over.
        started = stamp
        conn.execute(update(LIMIT_BUCKETS).where(rows.bucket_key == bucket.key).values(started_at=stamp))
    return parse_time_text(started)


def _entries(conn: Connection, charge: Charge, started_at: datetime, now: datetime) -> list[Entry]:
    """What the charge's bucket holds at ``now``."""
    bucket, window = charge.bucket, charge.window
    cutoff = window.cutoff(now)
    bound = time_text(cutoff) if cutoff is not None else None
    if bucket.kind == "budget":
        c = BUDGET_EVENTS.c
        query = select(c.id, c.occurred_at, c.amount).where(
            c.budget_name == bucket.owner, c.epoch == int(bucket.version), c.bucket_key == bucket.ledger_key
        )
    else:
        c = LIMIT_EVENTS.c
        query = select(c.id, c.occurred_at, c.amount).where(c.bucket_key == bucket.key)
    query = (
        query.where(c.occurred_at > bound)
        if bound is not None
        else query.where(c.occurred_at >= time_text(started_at))
    )
    found = [
        Entry(str(i), parse_time_text(str(at)), Decimal(str(amount))) for i, at, amount in conn.execute(query)
    ]
    return live(found, window, now, started_at)


def reserve(
    conn: Connection,
    charges: Sequence[Charge],
    now: datetime,
    *,
    approved: bool = False,
    tool: str | None = None,
    session_id: str | None = None,
) -> Reserved:
    """Check every charge and, if none breaches, take them all (one transaction; see the module doc)."""
    stamp = time_text(now)
    epochs: dict[str, int] = {}
    resolved: list[Charge] = []
    for charge in charges:
        if charge.budget is not None:
            name = charge.bucket.owner
            if name not in epochs:
                epochs[name] = ensure_epoch(conn, name, charge.fingerprint, stamp)
            charge = charge.with_epoch(epochs[name])
        resolved.append(charge)
    started: dict[str, datetime] = {}
    for charge in sorted(resolved, key=lambda c: c.bucket.key):
        started[charge.bucket.key] = _lock_bucket(conn, charge.bucket, charge.window, now)
    held = {c.bucket.key: _entries(conn, c, started[c.bucket.key], now) for c in resolved}
    checks = tuple(Check(c, usage_of(held[c.bucket.key])) for c in resolved)
    if breaches(checks, approved=approved):
        views = tuple(
            BucketView(c.bucket, c.window, started[c.bucket.key], tuple(held[c.bucket.key])) for c in resolved
        )
        return Reserved(checks, False, views=views, epochs=epochs)
    limit_ids: list[str] = []
    budget_ids: list[str] = []
    views_out: list[BucketView] = []
    for charge in resolved:
        bucket = charge.bucket
        entry_id = uuid.uuid4().hex
        amount = format(charge.amount, "f")
        if charge.budget is not None:
            conn.execute(
                insert(BUDGET_EVENTS).values(
                    id=entry_id,
                    budget_name=bucket.owner,
                    epoch=int(bucket.version),
                    bucket_key=bucket.ledger_key,
                    amount=amount,
                    currency=charge.currency or "",
                    occurred_at=stamp,
                    tool_name=tool,
                    session_id=session_id,
                )
            )
            budget_ids.append(entry_id)
        else:
            conn.execute(
                insert(LIMIT_EVENTS).values(
                    id=entry_id, bucket_key=bucket.key, amount=amount, occurred_at=stamp
                )
            )
            limit_ids.append(entry_id)
        conn.execute(
            update(LIMIT_BUCKETS).where(LIMIT_BUCKETS.c.bucket_key == bucket.key).values(last_activity=stamp)
        )
        entries = (*held[bucket.key], Entry(entry_id, now, charge.amount))
        views_out.append(BucketView(bucket, charge.window, started[bucket.key], entries))
    return Reserved(checks, True, tuple(limit_ids), tuple(budget_ids), tuple(views_out), epochs)


def release(conn: Connection, limit_event_ids: Sequence[str], budget_event_ids: Sequence[str]) -> int:
    """Give a reservation's capacity back; the number of rows removed."""
    removed = 0
    if limit_event_ids:
        removed += conn.execute(delete(LIMIT_EVENTS).where(LIMIT_EVENTS.c.id.in_(limit_event_ids))).rowcount
    if budget_event_ids:
        removed += conn.execute(
            delete(BUDGET_EVENTS).where(BUDGET_EVENTS.c.id.in_(budget_event_ids))
        ).rowcount
    return removed


def prune(conn: Connection, events_before: datetime, buckets_idle_before: datetime) -> int:
    """Drop rate/spend rows that no window reaches any more, and buckets idle for longer than any window.

    The budget ledger is kept (it follows ``audit.retention``)."""
    removed = conn.execute(
        delete(LIMIT_EVENTS).where(LIMIT_EVENTS.c.occurred_at < time_text(events_before))
    ).rowcount
    removed += conn.execute(
        delete(LIMIT_BUCKETS).where(LIMIT_BUCKETS.c.last_activity < time_text(buckets_idle_before))
    ).rowcount
    return removed


# -- reads (operator API, startup) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BucketRow:
    bucket: Bucket
    started_at: datetime
    last_activity: datetime


def bucket_rows(
    conn: Connection, owners: Sequence[tuple[str, str, str]], *, limit: int | None = None, offset: int = 0
) -> tuple[list[BucketRow], int]:
    """Buckets of the given ``(kind, owner, version)`` triples, most recently active first; and their count."""
    if not owners:
        return [], 0
    c = LIMIT_BUCKETS.c
    where = or_(*(and_(c.kind == k, c.owner == o, c.version == v) for k, o, v in owners))
    total = int(conn.execute(select(func.count()).select_from(LIMIT_BUCKETS).where(where)).scalar_one())
    query = select(LIMIT_BUCKETS).where(where).order_by(c.last_activity.desc(), c.bucket_key).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = [
        BucketRow(
            Bucket(r.kind, r.owner, r.version, r.scope, r.subject),
            parse_time_text(r.started_at),
            parse_time_text(r.last_activity),
        )
        for r in conn.execute(query)
    ]
    return rows, total


def bucket_entries(conn: Connection, charge: Charge, started_at: datetime, now: datetime) -> list[Entry]:
    """What a bucket holds at ``now`` (a read: no lock)."""
    return _entries(conn, charge, started_at, now)


def budget_epochs(conn: Connection) -> dict[str, tuple[int, str, str | None]]:
    """``name → (epoch, fingerprint, retired_at)`` of every budget the ledger knows."""
    c = BUDGET_META.c
    return {
        str(name): (int(epoch), str(fp), retired)
        for name, epoch, fp, retired in conn.execute(select(c.name, c.epoch, c.fingerprint, c.retired_at))
    }


LEDGER_COLUMNS = (
    "id",
    "budget_name",
    "epoch",
    "bucket_key",
    "amount",
    "currency",
    "occurred_at",
    "tool_name",
    "session_id",
    "audit_id",
)
"""Columns of a budget ledger page or export, in order."""


def ledger_page(
    conn: Connection, name: str, *, epoch: int | None, limit: int | None, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """A budget's charges, newest first, and how many there are."""
    c = BUDGET_EVENTS.c
    where = [c.budget_name == name]
    if epoch is not None:
        where.append(c.epoch == epoch)
    total = int(conn.execute(select(func.count()).select_from(BUDGET_EVENTS).where(*where)).scalar_one())
    query = (
        select(*(c[column] for column in LEDGER_COLUMNS))
        .where(*where)
        .order_by(c.occurred_at.desc(), c.id)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = [dict(row._mapping) for row in conn.execute(query)]  # pyright: ignore[reportPrivateUsage]
    return rows, total
