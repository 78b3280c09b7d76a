"""The durable side of limits and budgets: store jobs over ``limit_buckets``, ``limit_events``,
``budget_meta`` and ``budget_events``.

Every charge is a row: ``limit_events`` for a rule's rate or spend limit, ``budget_events`` (the
exportable ledger) for a budget. A bucket holds the rows younger than its window, so a restart
loses nothing and every proxy on one PostgreSQL database sees the same buckets.

:func:`reserve` is one write transaction, all or nothing over every bucket a call feeds:

1. resolve each budget's epoch (``budget_meta``; a new fingerprint starts the next epoch);
2. lock each bucket's ``limit_buckets`` row in key order (an upsert that takes the row lock on
   PostgreSQL, like ``SELECT ... FOR UPDATE``, so replicas take turns and never deadlock;
   SQLite's single writer, which begins ``IMMEDIATE``, already serializes);
3. add up what each bucket holds now (reserved rows included: a call in flight already counts;
   PostgreSQL sums the decimal amounts itself, SQLite's are added up as ``Decimal`` here);
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

from sqlalchemy import Connection, and_, delete, func, or_, select, text, update

from helio_proxy.limits.charges import Bucket, Charge
from helio_proxy.limits.windows import EMPTY, Usage, Window
from helio_proxy.store.base import parse_time_text, time_text
from helio_proxy.store.sqlite import DECIMAL_SUM
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
    usage: Usage
    """What the bucket held when last seen (after the call's own charge, if it was taken)."""


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


# The statements of the hot path, written once: a call's charges run a handful of them, and
# building SQLAlchemy expressions per call cost more than the database did.

_META = text("SELECT epoch, fingerprint, retired_at FROM budget_meta WHERE name = :name")
_NEW_META = text(
    "INSERT INTO budget_meta (name, epoch, fingerprint, updated_at) VALUES (:name, 1, :fp, :now) "
    "ON CONFLICT (name) DO NOTHING"
)
# Re-evaluated after a concurrent update commits (PostgreSQL), so replicas bump an epoch once.
_NEXT_EPOCH = text(
    "UPDATE budget_meta SET epoch = epoch + 1, fingerprint = :fp, updated_at = :now, retired_at = NULL "
    "WHERE name = :name AND (fingerprint <> :fp OR retired_at IS NOT NULL)"
)
# Creates the bucket's row or, when it exists, locks it (an upsert that updates takes the row
# lock on PostgreSQL) and returns it either way.
_LOCK_BUCKET = text(
    "INSERT INTO limit_buckets (bucket_key, kind, owner, version, scope, subject, started_at, last_activity) "
    "VALUES (:key, :kind, :owner, :version, :scope, :subject, :now, :now) "
    "ON CONFLICT (bucket_key) DO UPDATE SET last_activity = limit_buckets.last_activity "
    "RETURNING started_at, last_activity"
)
_RESTART_POT = text("UPDATE limit_buckets SET started_at = :now WHERE bucket_key = :key")
_TOUCH_BUCKET = text("UPDATE limit_buckets SET last_activity = :now WHERE bucket_key = :key")
_INSERT_LIMIT_EVENT = text(
    "INSERT INTO limit_events (id, bucket_key, amount, occurred_at, audit_id) "
    "VALUES (:id, :key, :amount, :now, :audit)"
)
_INSERT_BUDGET_EVENT = text(
    "INSERT INTO budget_events (id, budget_name, epoch, bucket_key, amount, currency, occurred_at, "
    "tool_name, session_id, audit_id) "
    "VALUES (:id, :name, :epoch, :key, :amount, :currency, :now, :tool, :session, :audit)"
)

_LIMIT_ROWS = "FROM limit_events WHERE bucket_key = :key AND occurred_at > :bound"
_BUDGET_ROWS = (
    "FROM budget_events WHERE budget_name = :name AND epoch = :epoch AND bucket_key = :key AND occurred_at "
)
_AGGREGATES = "SELECT count(*), min(occurred_at), max(occurred_at)"
_SUMS = {
    # Exact decimal sums in the database: PostgreSQL's NUMERIC, and on SQLite (no exact decimal
    # type) the aggregate the SQLite store registers on its connections.
    "postgresql": ", COALESCE(SUM(CAST(amount AS NUMERIC)), 0) ",
    "sqlite": f", COALESCE({DECIMAL_SUM}(amount), '0') ",
}
_USAGE = {
    # (dialect, table, session pot) -> statement. Stored times are fixed-width text, so they
    # compare as text.
    **{
        (dialect, table, pot): text(f"{_AGGREGATES}{', count(*) ' if table == 'limit' else total}{rows}")
        for dialect, total in _SUMS.items()
        for table, pot, rows in (
            ("limit", False, f"{_LIMIT_ROWS}"),  # a rate slot is 1: the total is the count
            ("spend", False, f"{_LIMIT_ROWS}"),
            ("budget", False, f"{_BUDGET_ROWS}> :bound"),
            ("budget", True, f"{_BUDGET_ROWS}>= :bound"),
        )
    },
}


def ensure_epoch(conn: Connection, name: str, fingerprint: str, now: str) -> int:
    """The budget's current epoch, starting the next one if its fingerprint changed (or it was retired)."""
    row = conn.execute(_META, {"name": name}).first()
    if row is not None and row.fingerprint == fingerprint and row.retired_at is None:
        return int(row.epoch)
    conn.execute(_NEW_META, {"name": name, "fp": fingerprint, "now": now})
    conn.execute(_NEXT_EPOCH, {"name": name, "fp": fingerprint, "now": now})
    return int(conn.execute(_META, {"name": name}).one().epoch)


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
    row = conn.execute(
        _LOCK_BUCKET,
        {
            "key": bucket.key,
            "kind": bucket.kind,
            "owner": bucket.owner,
            "version": bucket.version,
            "scope": bucket.scope,
            "subject": bucket.subject,
            "now": stamp,
        },
    ).one()
    started = str(row.started_at)
    idle = window.idle_since(now)
    if idle is not None and str(row.last_activity) <= time_text(idle) and started < stamp:
        # A session pot idle for idle_ttl starts over.
        started = stamp
        conn.execute(_RESTART_POT, {"key": bucket.key, "now": stamp})
    return parse_time_text(started)


def _usage(conn: Connection, charge: Charge, started_at: datetime, now: datetime) -> Usage:
    """What the charge's bucket holds at ``now``, summed exactly by the database."""
    bucket, window = charge.bucket, charge.window
    cutoff = window.cutoff(now)
    params: dict[str, Any] = {"bound": time_text(cutoff if cutoff is not None else started_at)}
    if bucket.kind == "budget":
        params.update(name=bucket.owner, epoch=int(bucket.version), key=bucket.ledger_key)
        table = "budget"
    else:
        params["key"] = bucket.key
        table = "limit" if bucket.kind == "rate" else "spend"
    statement = _USAGE[(conn.dialect.name, table, cutoff is None)]
    count, oldest, newest, total = conn.execute(statement, params).one()
    if not count:
        return EMPTY
    return Usage(Decimal(total), int(count), parse_time_text(str(oldest)), parse_time_text(str(newest)))


def reserve(
    conn: Connection,
    charges: Sequence[Charge],
    now: datetime,
    *,
    approved: bool = False,
    tool: str | None = None,
    session_id: str | None = None,
    audit_id: str | None = None,
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
    checks = tuple(Check(c, _usage(conn, c, started[c.bucket.key], now)) for c in resolved)
    if breaches(checks, approved=approved):
        views = tuple(
            BucketView(c.charge.bucket, c.charge.window, started[c.charge.bucket.key], c.usage)
            for c in checks
        )
        return Reserved(checks, False, views=views, epochs=epochs)
    limit_ids: list[str] = []
    budget_ids: list[str] = []
    views_out: list[BucketView] = []
    for check in checks:
        charge, bucket = check.charge, check.charge.bucket
        entry_id = uuid.uuid4().hex
        amount = format(charge.amount, "f")
        params = {"id": entry_id, "amount": amount, "now": stamp, "audit": audit_id}
        if charge.budget is not None:
            conn.execute(
                _INSERT_BUDGET_EVENT,
                {
                    **params,
                    "name": bucket.owner,
                    "epoch": int(bucket.version),
                    "key": bucket.ledger_key,
                    "currency": charge.currency or "",
                    "tool": tool,
                    "session": session_id,
                },
            )
            budget_ids.append(entry_id)
        else:
            conn.execute(_INSERT_LIMIT_EVENT, {**params, "key": bucket.key})
            limit_ids.append(entry_id)
        conn.execute(_TOUCH_BUCKET, {"key": bucket.key, "now": stamp})
        after = Usage(
            check.usage.total + charge.amount, check.usage.count + 1, check.usage.oldest or now, now
        )
        views_out.append(BucketView(bucket, charge.window, started[bucket.key], after))
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


def bucket_usage(conn: Connection, charge: Charge, started_at: datetime, now: datetime) -> Usage:
    """What a bucket holds at ``now`` (a read: no lock)."""
    return _usage(conn, charge, started_at, now)


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
