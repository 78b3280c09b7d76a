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
3. bring each bucket's running totals (``charge_total``, ``charge_count`` on its row) up to now:
   the charges that aged out of its sliding window since it was last used are taken off, each
   once (a range over the ``(bucket, occurred_at)`` index that holds only what aged out; nothing
   is read when the oldest counted charge is still inside the window). The check is therefore
   O(1) in the number of charges the window holds. Reserved rows count: a call in flight already
   counts. Amounts are exact ``Decimal`` (decimal text in the store);
4. if every charge fits, insert one row per bucket and add it to the totals. Nothing is read
   before the lock and written after it, so two proxies can never both take the last slot.

:func:`release` deletes a reservation's rows (the call never reached the upstream) and takes them off
their buckets' totals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, TextClause, and_, delete, func, or_, select, text, update

from helio_proxy.ids import new_hex
from helio_proxy.limits.charges import Bucket, Charge
from helio_proxy.limits.windows import EMPTY, Usage, Window
from helio_proxy.store.base import parse_time_text, time_text
from helio_proxy.store.sqlite import DECIMAL_SUM, sqlite_driver
from helio_proxy.store.tables import BUDGET_EVENTS, BUDGET_META, LIMIT_BUCKETS, LIMIT_EVENTS
from helio_proxy.values import value


@value
class Check:
    """One charge against what its bucket held when the call was checked."""

    charge: Charge
    usage: Usage
    """The bucket before this call."""

    @property
    def fits(self) -> bool:
        return self.usage.total + self.charge.amount <= self.charge.limit


@value
class BucketView:
    """A bucket as the ledger last saw it (the proxy's local view, used for dry runs)."""

    bucket: Bucket
    window: Window
    started_at: datetime
    usage: Usage
    """What the bucket held when last seen (after the call's own charge, if it was taken)."""


@value
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


def _run(conn: Connection, statement: TextClause, params: dict[str, Any]) -> Any:
    """Execute one of the fixed hot-path statements; the result's rows unpack by position.

    On SQLite the statement goes straight to the driver (:func:`sqlite_driver`; the check runs
    three); other dialects (their own parameter styles) go through SQLAlchemy.
    """
    driver = sqlite_driver(conn)
    if driver is not None:
        return driver.execute(statement.text, params)
    return conn.execute(statement, params)


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
    "INSERT INTO limit_buckets (bucket_key, kind, owner, version, scope, subject, started_at, last_activity, "
    "charge_total, charge_count, counted_from) "
    "VALUES (:key, :kind, :owner, :version, :scope, :subject, :now, :now, '0', 0, :bound) "
    "ON CONFLICT (bucket_key) DO UPDATE SET last_activity = limit_buckets.last_activity "
    "RETURNING started_at, last_activity, charge_total, charge_count, counted_from, oldest_at, newest_at"
)
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
    for epoch, stored, retired_at in _run(conn, _META, {"name": name}).fetchall():
        if stored == fingerprint and retired_at is None:
            return int(epoch)
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


@dataclass(slots=True)
class _Tally:
    """A locked bucket's running totals (``limit_buckets``), as this transaction moves them."""

    started: str
    total: Decimal
    count: int
    counted_from: str | None
    """A sliding window's last cutoff (charges at or before it were taken off); ``None``: a session pot."""
    oldest: str | None
    newest: str | None
    dirty: bool = False

    @classmethod
    def locked(cls, row: Sequence[Any]) -> _Tally:
        """The totals of a bucket row as locking it returns them (``started_at, last_activity,
        charge_total, charge_count, counted_from, oldest_at, newest_at``); a bucket from before
        running totals (``charge_total`` NULL) reads as empty."""
        started_at, _, charge_total, charge_count, counted_from, oldest_at, newest_at = row
        return cls(
            str(started_at),
            Decimal(0 if charge_total is None else str(charge_total)),
            int(charge_count or 0),
            None if counted_from is None else str(counted_from),
            None if oldest_at is None else str(oldest_at),
            None if newest_at is None else str(newest_at),
        )

    def counts(self, occurred: str) -> bool:
        """Whether a charge taken at ``occurred`` is in the totals (after the last cutoff, or in
        the session pot since it started)."""
        return occurred >= self.started if self.counted_from is None else occurred > self.counted_from

    def usage(self) -> Usage:
        if not self.count:
            return EMPTY
        return Usage(
            self.total,
            self.count,
            parse_time_text(self.oldest) if self.oldest else None,
            parse_time_text(self.newest) if self.newest else None,
        )


@dataclass(frozen=True, slots=True)
class _Rows:
    """Where a bucket's charges are: ``limit_events`` by bucket key, or a budget's ledger rows."""

    key: str
    budget: tuple[str, int, str] | None = None
    """``(budget_name, epoch, ledger bucket_key)`` for a budget bucket."""

    @classmethod
    def of(cls, bucket: Bucket) -> _Rows:
        if bucket.kind == "budget":
            return cls(bucket.key, (bucket.owner, int(bucket.version), bucket.ledger_key))
        return cls(bucket.key)


def _rows(where: _Rows) -> tuple[str, dict[str, Any]]:
    """The ``FROM ... WHERE`` naming a bucket's rows, and its parameters."""
    if where.budget is not None:
        name, epoch, ledger_key = where.budget
        return (
            "FROM budget_events WHERE budget_name = :name AND epoch = :epoch AND bucket_key = :lkey ",
            {"name": name, "epoch": epoch, "lkey": ledger_key},
        )
    return "FROM limit_events WHERE bucket_key = :key ", {"key": where.key}


_SUM_EXPR = {
    "postgresql": "COALESCE(SUM(CAST(amount AS NUMERIC)), 0)",
    "sqlite": f"COALESCE({DECIMAL_SUM}(amount), '0')",
}


def _aged_out(conn: Connection, bucket: Bucket, after: str, bound: str) -> tuple[int, Decimal]:
    """How many charges, and how much, the bucket counted in ``(after, bound]``."""
    rows, params = _rows(_Rows.of(bucket))
    count, total = conn.execute(
        text(
            f"SELECT count(*), {_SUM_EXPR[conn.dialect.name]} {rows}AND occurred_at > :after AND occurred_at <= :bound"
        ),
        {**params, "after": after, "bound": bound},
    ).one()
    return int(count), Decimal(total)


def _oldest(conn: Connection, where: _Rows, tally: _Tally) -> str | None:
    """The oldest charge the bucket still counts (an index seek)."""
    if not tally.count:
        return None
    rows, params = _rows(where)
    if tally.counted_from is None:
        after, bound = "AND occurred_at >= :bound ", tally.started
    else:
        after, bound = "AND occurred_at > :bound ", tally.counted_from
    value = conn.execute(
        text(f"SELECT occurred_at {rows}{after}ORDER BY occurred_at LIMIT 1"), {**params, "bound": bound}
    ).scalar()
    return None if value is None else str(value)


_SAVE_TALLY = text(
    "UPDATE limit_buckets SET started_at = :started, last_activity = :activity, charge_total = :total, "
    "charge_count = :count, counted_from = :counted_from, oldest_at = :oldest, newest_at = :newest "
    "WHERE bucket_key = :key"
)


def _save(conn: Connection, key: str, tally: _Tally, activity: str) -> None:
    _run(
        conn,
        _SAVE_TALLY,
        {
            "key": key,
            "started": tally.started,
            "activity": activity,
            "total": format(tally.total, "f"),
            "count": tally.count,
            "counted_from": tally.counted_from,
            "oldest": tally.oldest,
            "newest": tally.newest,
        },
    )


def _lock_bucket(conn: Connection, charge: Charge, now: datetime) -> tuple[_Tally, str]:
    """Create the bucket's row if new, lock it, and bring its running totals up to ``now``.

    Charges that aged out of a sliding window since the bucket was last used are taken off its
    totals (each charge once, over the ``(bucket, occurred_at)`` index: the work follows what aged
    out, never what the window holds); rate and spend rows that aged out are deleted. Returns the
    totals and the bucket's ``last_activity`` as locked.
    """
    bucket, window = charge.bucket, charge.window
    stamp = time_text(now)
    cutoff = window.cutoff(now)
    bound = None if cutoff is None else time_text(cutoff)
    [row] = _run(
        conn,
        _LOCK_BUCKET,
        {
            "key": bucket.key,
            "kind": bucket.kind,
            "owner": bucket.owner,
            "version": bucket.version,
            "scope": bucket.scope,
            "subject": bucket.subject,
            "now": stamp,
            "bound": bound,
        },
    ).fetchall()
    started_at, last_activity, charge_total, *_ = row
    activity = str(last_activity)
    started = str(started_at)
    idle = window.idle_since(now)
    if idle is not None and activity <= time_text(idle) and started < stamp:
        # A session pot idle for idle_ttl starts over.
        return _Tally(stamp, Decimal(0), 0, None, None, None, dirty=True), activity
    if charge_total is None:
        # A bucket from before running totals: add its rows up once.
        usage = _usage(conn, charge, parse_time_text(started), now)
        tally = _Tally(
            started,
            usage.total,
            usage.count,
            bound,
            time_text(usage.oldest) if usage.oldest else None,
            time_text(usage.newest) if usage.newest else None,
            dirty=True,
        )
        if bucket.kind != "budget" and bound is not None:
            _run(conn, _DELETE_AGED_SINCE, {"key": bucket.key, "after": "", "bound": bound})
        return tally, activity
    tally = _Tally.locked(row)
    if bound is None or tally.oldest is None or tally.oldest > bound:
        return tally, activity  # nothing aged out: no read at all
    counted_after = tally.counted_from or ""
    if tally.newest is None or tally.newest <= bound:
        tally.total, tally.count, tally.oldest, tally.newest = Decimal(0), 0, None, None
    else:
        count, total = _aged_out(conn, bucket, counted_after, bound)
        tally.total -= total
        tally.count -= count
        tally.counted_from = bound
        tally.oldest = _oldest(conn, _Rows.of(bucket), tally)
    tally.counted_from = bound
    tally.dirty = True
    if bucket.kind != "budget":
        _run(conn, _DELETE_AGED_SINCE, {"key": bucket.key, "after": counted_after, "bound": bound})
    return tally, activity


# Only what aged out since the last cutoff (``after``; "" when the bucket has none yet, as one
# written before running totals): rows at or before it were deleted then. On PostgreSQL
# a delete leaves its index entries until vacuum, and an unbounded range walked every one of them
# again (a bucket aging out ~1,700 charges a second: 10,009 index entries visited to delete 12,
# 0.9 ms, growing by the minute). A row written at or before the cutoff after it moved (a replica
# whose clock lags) is left to :func:`prune`.
_DELETE_AGED_SINCE = text(
    "DELETE FROM limit_events WHERE bucket_key = :key AND occurred_at > :after AND occurred_at <= :bound"
)


def _usage(conn: Connection, charge: Charge, started_at: datetime, now: datetime) -> Usage:
    """What the charge's bucket holds at ``now``, summed from its rows by the database (reads)."""
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
    if in_one_statement(conn.dialect.name, charges):
        return ReserveInOne(charges[0], now, audit_id)(conn)
    return reserve_by_statements(
        conn, charges, now, approved=approved, tool=tool, session_id=session_id, audit_id=audit_id
    )


def reserve_by_statements(
    conn: Connection,
    charges: Sequence[Charge],
    now: datetime,
    *,
    approved: bool = False,
    tool: str | None = None,
    session_id: str | None = None,
    audit_id: str | None = None,
) -> Reserved:
    """:func:`reserve` as statements sent one by one (every backend, every mix of charges)."""
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
    tallies: dict[str, tuple[_Tally, str]] = {}
    for charge in sorted(resolved, key=lambda c: c.bucket.key):
        if charge.bucket.key not in tallies:
            tallies[charge.bucket.key] = _lock_bucket(conn, charge, now)
    checks = tuple(Check(c, tallies[c.bucket.key][0].usage()) for c in resolved)
    if breaches(checks, approved=approved):
        for key, (tally, activity) in tallies.items():
            if tally.dirty:
                _save(conn, key, tally, activity)
        views = tuple(
            BucketView(
                c.charge.bucket,
                c.charge.window,
                parse_time_text(tallies[c.charge.bucket.key][0].started),
                c.usage,
            )
            for c in checks
        )
        return Reserved(checks, False, views=views, epochs=epochs)
    limit_ids: list[str] = []
    budget_ids: list[str] = []
    views_out: list[BucketView] = []
    for check in checks:
        charge, bucket = check.charge, check.charge.bucket
        entry_id = new_hex()  # time-ordered: the events' primary key index grows at its end
        amount = format(charge.amount, "f")
        params = {"id": entry_id, "amount": amount, "now": stamp, "audit": audit_id}
        if charge.budget is not None:
            _run(
                conn,
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
            _run(conn, _INSERT_LIMIT_EVENT, {**params, "key": bucket.key})
            limit_ids.append(entry_id)
        tally = tallies[bucket.key][0]
        tally.total += charge.amount
        tally.count += 1
        tally.oldest = tally.oldest or stamp
        tally.newest = stamp
        tally.dirty = True
        after = check.usage.charged(charge.amount, now)
        views_out.append(BucketView(bucket, charge.window, parse_time_text(tally.started), after))
    for key, (tally, activity) in tallies.items():
        _save(conn, key, tally, stamp if tally.newest == stamp else activity)
    return Reserved(checks, True, tuple(limit_ids), tuple(budget_ids), tuple(views_out), epochs)


def in_one_statement(dialect: str, charges: Sequence[Charge]) -> bool:
    """:func:`reserve` sends one statement for these charges: on PostgreSQL, a single rate or
    spend charge (the common case, a call under one limit rule and no budget) is reserved by
    the ``helio_limit_reserve`` function (migration ``0011``), which runs the statements of the
    general path server-side in the same order, with the same row lock. One statement is its
    own transaction, so the store can send it without BEGIN and COMMIT, from the event loop
    (:meth:`~helio_proxy.store.base.Store.write_statement`): one round trip instead of five, and
    no thread hand-offs."""
    return dialect == "postgresql" and len(charges) == 1 and charges[0].budget is None


_RESERVE_IN_ONE = (
    "SELECT taken, started, total, charges, oldest, newest FROM helio_limit_reserve(%(key)s, %(kind)s, "
    "%(owner)s, %(version)s, %(scope)s, %(subject)s, %(now)s, %(bound)s, %(idle)s, %(amount)s, %(limit)s, "
    "%(id)s, %(audit)s)"
)


@dataclass(frozen=True, slots=True)
class ReserveInOne:
    """A reservation of one rate or spend charge as one statement (:func:`in_one_statement`):
    :meth:`~helio_proxy.store.base.Store.write_statement` sends it from the event loop, and
    :func:`reserve` runs it on a connection (tests, and any caller inside a transaction)."""

    charge: Charge
    now: datetime
    audit_id: str | None
    entry_id: str = field(default_factory=new_hex)  # time-ordered, like every charge id

    @property
    def sql(self) -> str:
        return _RESERVE_IN_ONE

    @property
    def params(self) -> dict[str, Any]:
        bucket, window = self.charge.bucket, self.charge.window
        cutoff, idle = window.cutoff(self.now), window.idle_since(self.now)
        return {
            "key": bucket.key,
            "kind": bucket.kind,
            "owner": bucket.owner,
            "version": bucket.version,
            "scope": bucket.scope,
            "subject": bucket.subject,
            "now": time_text(self.now),
            "bound": None if cutoff is None else time_text(cutoff),
            "idle": None if idle is None else time_text(idle),
            "amount": format(self.charge.amount, "f"),
            "limit": format(self.charge.limit, "f"),
            "id": self.entry_id,
            "audit": self.audit_id,
        }

    def finish(self, row: Sequence[Any] | None) -> Reserved:
        if row is None:
            raise RuntimeError("helio_limit_reserve() returned no row")
        taken, started, total, count, oldest, newest = row
        charge, now = self.charge, self.now
        before = _Tally(str(started), Decimal(str(total)), int(count), None, oldest, newest).usage()
        check = Check(charge, before)
        started_at = parse_time_text(str(started))
        if not taken:
            return Reserved(
                (check,), False, views=(BucketView(charge.bucket, charge.window, started_at, before),)
            )
        view = BucketView(charge.bucket, charge.window, started_at, before.charged(charge.amount, now))
        return Reserved((check,), True, limit_event_ids=(self.entry_id,), views=(view,))

    def __call__(self, conn: Connection) -> Reserved:
        # Straight to psycopg (its placeholders): SQLAlchemy's own execution cost about 70 µs
        # per call here, as much as the function's work in PostgreSQL.
        driver: Any = conn.connection.driver_connection
        return self.finish(driver.execute(self.sql, self.params).fetchone())


_LOCK_FOR_RELEASE = text(
    "UPDATE limit_buckets SET last_activity = last_activity WHERE bucket_key = :key "
    "RETURNING started_at, last_activity, charge_total, charge_count, counted_from, oldest_at, newest_at"
)


def release(conn: Connection, limit_event_ids: Sequence[str], budget_event_ids: Sequence[str]) -> int:
    """Give a reservation's capacity back (its rows deleted, its buckets' totals reduced); the rows removed."""
    found: list[tuple[_Rows, str, Decimal]] = []
    if limit_event_ids:
        c = LIMIT_EVENTS.c
        for key, amount, occurred in conn.execute(
            select(c.bucket_key, c.amount, c.occurred_at).where(c.id.in_(limit_event_ids))
        ):
            found.append((_Rows(str(key)), str(occurred), Decimal(amount)))
    if budget_event_ids:
        c = BUDGET_EVENTS.c
        for name, epoch, ledger_key, amount, occurred in conn.execute(
            select(c.budget_name, c.epoch, c.bucket_key, c.amount, c.occurred_at).where(
                c.id.in_(budget_event_ids)
            )
        ):
            key = f"budget:{name}:{epoch}:{ledger_key}"  # as Bucket.key spells it
            found.append(
                (_Rows(key, (str(name), int(epoch), str(ledger_key))), str(occurred), Decimal(amount))
            )
    removed = 0
    if limit_event_ids:
        removed += conn.execute(delete(LIMIT_EVENTS).where(LIMIT_EVENTS.c.id.in_(limit_event_ids))).rowcount
    if budget_event_ids:
        removed += conn.execute(
            delete(BUDGET_EVENTS).where(BUDGET_EVENTS.c.id.in_(budget_event_ids))
        ).rowcount
    for where, occurred, amount in sorted(found, key=lambda f: f[0].key):
        row = conn.execute(_LOCK_FOR_RELEASE, {"key": where.key}).first()
        if row is None or row.charge_total is None:
            continue  # no totals to correct (summed from the rows on next use)
        tally = _Tally.locked(row)
        if not tally.counts(occurred):
            continue
        tally.total -= amount
        tally.count -= 1
        tally.oldest = _oldest(conn, where, tally)
        if not tally.count:
            tally.total, tally.newest = Decimal(0), None
        _save(conn, where.key, tally, str(row.last_activity))
    return removed


# The rows the periodic prune deletes, found bucket by bucket over the ``(bucket_key,
# occurred_at)`` index (migration 0013 dropped the index on ``occurred_at`` alone: one index
# entry less for every charge to write): rows before ``before`` of a bucket idle since then, and
# rows at or before a live bucket's last cutoff that its own deletes skipped. SQLite has no
# DELETE ... USING; its CROSS JOIN keeps the buckets as the outer loop.
_PRUNE_EVENTS = {
    "sqlite": text(
        "DELETE FROM limit_events WHERE rowid IN (SELECT e.rowid FROM limit_buckets b CROSS JOIN limit_events e "
        "WHERE e.bucket_key = b.bucket_key AND e.occurred_at < :before AND (b.last_activity < :before "
        "OR (b.counted_from IS NOT NULL AND e.occurred_at <= b.counted_from)))"
    ),
    "postgresql": text(
        "DELETE FROM limit_events e USING limit_buckets b "
        "WHERE e.bucket_key = b.bucket_key AND e.occurred_at < :before AND (b.last_activity < :before "
        "OR (b.counted_from IS NOT NULL AND e.occurred_at <= b.counted_from))"
    ),
}
# Whatever rows a bucket about to be deleted still has (a replica whose clock leads may have
# written one after its last activity), so no row outlives its bucket.
_PRUNE_IDLE_BUCKETS_EVENTS = text(
    "DELETE FROM limit_events WHERE bucket_key IN (SELECT bucket_key FROM limit_buckets WHERE last_activity < :idle)"
)


def prune(conn: Connection, events_before: datetime, buckets_idle_before: datetime) -> int:
    """Drop rate/spend rows no window reaches any more, and buckets idle for longer than any window.

    A bucket used since ``events_before`` takes its own aged-out rows off its totals and deletes
    them when next used, so only rows of buckets idle since then (whose totals start over on
    their next use) are deleted here, and rows at or before a bucket's last cutoff that its own
    deletes skipped (written late, by a replica whose clock lags). A bucket is deleted with every
    row it still has, so no row is left without its bucket. The work follows the buckets and the
    rows deleted, never the rows kept. The budget ledger is kept (it follows ``audit.retention``)."""
    idle = {"idle": time_text(buckets_idle_before)}
    removed = conn.execute(_PRUNE_EVENTS[conn.dialect.name], {"before": time_text(events_before)}).rowcount
    removed += conn.execute(_PRUNE_IDLE_BUCKETS_EVENTS, idle).rowcount
    removed += conn.execute(
        delete(LIMIT_BUCKETS).where(LIMIT_BUCKETS.c.last_activity < idle["idle"])
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


# -- capacity grants (limits/grants.py) --------------------------------------------------------

GRANT_MARK = "grant:"
"""``limit_events.audit_id`` of a capacity grant not yet settled: ``grant:`` and the moment
(stored time text) by which its holder settles it."""

_GRANT_ROW = text("SELECT amount, occurred_at FROM limit_events WHERE id = :id")
_DELETE_EVENT = text("DELETE FROM limit_events WHERE id = :id")
# Over the (bucket_key, occurred_at) index, only the last few seconds of the bucket's rows.
_GRANTS_OUTSTANDING = text(
    "SELECT max(audit_id) FROM limit_events WHERE bucket_key = :key AND occurred_at >= :since "
    "AND audit_id LIKE 'grant:%'"
)


@dataclass(frozen=True, slots=True)
class GrantUse:
    """One call's share of a grant, written as its own charge when the grant is settled."""

    entry_id: str
    amount: Decimal
    occurred_at: datetime
    audit_id: str | None


def settle_grant(conn: Connection, key: str, grant_id: str, uses: Sequence[GrantUse]) -> int:
    """Replace a capacity grant's row by one row per call that used it (each with its own time,
    amount and audit id), so the bucket ends as if every call had been reserved on its own; the
    unused part is given back. One transaction, under the bucket's row lock. A use the window
    has already passed (at or before the bucket's last cutoff) is not written: its share aged
    out with the grant's row. Returns the rows written."""
    row = _run(conn, _LOCK_FOR_RELEASE, {"key": key}).fetchone()
    grant = _run(conn, _GRANT_ROW, {"id": grant_id}).fetchone()
    if grant is not None:
        _run(conn, _DELETE_EVENT, {"id": grant_id})
    if row is None:
        return 0  # the bucket was pruned: nothing of it counts any more
    _, last_activity, charge_total, *_ = row
    tally = _Tally.locked(row)
    if grant is not None and tally.counts(str(grant[1])):
        tally.total -= Decimal(str(grant[0]))
        tally.count -= 1
    kept = [(use, time_text(use.occurred_at)) for use in uses]
    kept = [(use, stamp) for use, stamp in kept if tally.counts(stamp)]
    if kept:
        params = [
            {
                "id": use.entry_id,
                "key": key,
                "amount": format(use.amount, "f"),
                "now": stamp,
                "audit": use.audit_id,
            }
            for use, stamp in kept
        ]
        driver = sqlite_driver(conn)
        if driver is not None:
            driver.executemany(_INSERT_LIMIT_EVENT.text, params)
        else:
            conn.execute(_INSERT_LIMIT_EVENT, params)
        tally.total += sum((use.amount for use, _ in kept), Decimal(0))
        tally.count += len(kept)
        latest = max(stamp for _, stamp in kept)
        tally.newest = latest if tally.newest is None or latest > tally.newest else tally.newest
    if charge_total is None:
        return len(kept)  # a bucket from before running totals: summed from its rows on next use
    if grant is None or tally.oldest is None or str(grant[1]) <= tally.oldest:
        tally.oldest = _oldest(conn, _Rows(key), tally)  # the grant's row may have been the oldest
    if not tally.count:
        tally.total, tally.oldest, tally.newest = Decimal(0), None, None
    _save(conn, key, tally, str(last_activity))
    return len(kept)


def grant_deadline(conn: Connection, key: str, since: datetime) -> str | None:
    """The latest settle-by time of the bucket's unsettled grants taken at or after ``since``
    (``None``: none). Only recent rows are read, however many the window holds."""
    value = conn.execute(_GRANTS_OUTSTANDING, {"key": key, "since": time_text(since)}).scalar()
    return None if value is None else str(value)[len(GRANT_MARK) :]
