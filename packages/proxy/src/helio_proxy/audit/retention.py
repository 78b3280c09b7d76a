"""Retention: records older than ``audit.retention`` are deleted at startup and then daily.

Deletion removes a prefix of the chain (records in sequence order up to the first one still
young enough), so what remains is still one unbroken chain; the hash of the last deleted record
becomes the chain's anchor, where ``helio audit verify`` starts. The budget ledger and limit
events older than the cutoff go in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from sqlalchemy import Connection, delete, func, select, update

from helio_proxy.audit.chain import lock_chain
from helio_proxy.audit.clock import SYSTEM_CLOCK, Clock
from helio_proxy.store.base import Store, time_text
from helio_proxy.store.tables import AUDIT_CHAIN, AUDIT_RECORDS, BUDGET_EVENTS, LIMIT_EVENTS

log = logging.getLogger("helio.audit")

SWEEP_INTERVAL_SECONDS: Final = 24 * 3600
"""Time between sweeps after the one at startup."""

SWEEP_CHUNK: Final = 5_000
"""Records deleted per transaction. A sweep holds the store's write lock (and its writer thread)
while it deletes: 50,000 records in one transaction held them 0.86 s on SQLite, so a first sweep
over millions would have stalled every audit batch and limit reservation for minutes. In chunks
the other writes take turns with it (about 0.1 s at a time)."""


@dataclass(frozen=True, slots=True)
class SweepResult:
    records: int
    ledger_rows: int
    more: bool = False
    """Stopped at its ``limit`` with old records left (sweep again)."""


def sweep(conn: Connection, cutoff: str, *, limit: int | None = None) -> SweepResult:
    """Delete records stamped before ``cutoff`` (stored time text) and ledger rows likewise.

    ``limit``: delete at most that many records (the oldest, up to the seq ``limit`` above the
    anchor); the ledger rows go only in the call that reaches the first young record, and a
    caller repeats while the result says ``more``."""
    state = lock_chain(conn)
    seq = AUDIT_RECORDS.c.seq
    first_young = conn.execute(select(func.min(seq)).where(AUDIT_RECORDS.c.timestamp >= cutoff)).scalar()
    bound = int(first_young) - 1 if first_young is not None else state.seq
    if limit is not None and bound - state.anchor_seq > limit:
        bound = state.anchor_seq + limit
        limited = True
    else:
        limited = False
    records = 0
    if bound > state.anchor_seq:
        anchor_hash = conn.execute(select(AUDIT_RECORDS.c.hash).where(seq == bound)).scalar()
        records = conn.execute(delete(AUDIT_RECORDS).where(seq <= bound)).rowcount
        conn.execute(
            update(AUDIT_CHAIN)
            .where(AUDIT_CHAIN.c.id == 1)
            .values(anchor_seq=bound, anchor_hash=anchor_hash or "")
        )
    if limited:
        return SweepResult(records=records, ledger_rows=0, more=True)
    ledger = conn.execute(delete(BUDGET_EVENTS).where(BUDGET_EVENTS.c.occurred_at < cutoff)).rowcount
    ledger += conn.execute(delete(LIMIT_EVENTS).where(LIMIT_EVENTS.c.occurred_at < cutoff)).rowcount
    return SweepResult(records=records, ledger_rows=ledger)


class RetentionSweeper:
    """Runs :func:`sweep` through a store now and every ``interval`` seconds."""

    def __init__(
        self,
        store: Store,
        retention_seconds: int,
        *,
        clock: Clock = SYSTEM_CLOCK,
        interval: float = SWEEP_INTERVAL_SECONDS,
        chunk: int = SWEEP_CHUNK,
    ) -> None:
        self.store = store
        self.chunk = chunk
        self.retention = timedelta(seconds=retention_seconds)
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> SweepResult:
        """Delete what is older than the retention, :data:`SWEEP_CHUNK` records per transaction."""
        cutoff = time_text(self.clock.now() - self.retention)
        records = 0
        while True:
            part = await self.store.write(lambda conn: sweep(conn, cutoff, limit=self.chunk))
            records += part.records
            if not part.more:
                break
        result = SweepResult(records=records, ledger_rows=part.ledger_rows)
        if result.records or result.ledger_rows:
            log.info(
                "retention: deleted %d audit records and %d ledger rows older than %s",
                result.records,
                result.ledger_rows,
                cutoff,
            )
        return result

    def start(self) -> None:
        """Sweep every ``interval`` seconds in the background (the startup sweep is the caller's)."""
        self._task = asyncio.create_task(self._run(), name="helio-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("retention sweep failed; retrying at the next interval")
