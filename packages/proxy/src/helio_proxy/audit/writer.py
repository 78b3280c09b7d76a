"""The batched audit writer: records go in on the event loop, batches commit on the store's writer.

``batched``: a batch is sent when 50 records are waiting or 100 ms after the first one; each
batch is one transaction (on SQLite, batches that queue up behind other writes share one: see
``SqlStore.group_writes``). ``strict`` (group commit): whatever is waiting is sent at once as one
transaction; records arriving meanwhile wait for it to commit and then go together, and every
call waiting on a batch is woken when it commits.

The writer never fails or stalls a call: :meth:`AuditWriter.submit` never blocks, a full queue
(``max_pending``) drops the record (counted and logged), a failed batch is retried a few times and
then counted and logged. While batches fail, :attr:`AuditWriter.failure` says why (``/healthz``
reports it; in ``strict`` mode the gateway refuses calls with ``audit_unavailable``); the next batch
that commits clears it. On a clean stop :meth:`close` writes everything; on a crash the
``atexit`` hook writes what is still buffered, giving up after two seconds.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection

from helio_proxy.audit.chain import write_job
from helio_proxy.audit.clock import SYSTEM_CLOCK, Clock
from helio_proxy.audit.records import AnyRecord
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.audit.sink import ProcessSink, SinkFailed
from helio_proxy.store.base import Durability, Store

log = logging.getLogger("helio.audit")

DEFAULT_BATCH_SIZE: Final = 50
"""A batch is sent as soon as this many records wait (batched mode)."""
MAX_INFLIGHT_BATCHES: Final = 2
"""Batched mode: batches handed to the store at once. While that many are being written, new
records wait and leave together when one of them commits (group commit): a writer that falls
behind a busy proxy writes fewer, larger transactions, instead of one more per 50 records."""
MAX_BATCH: Final = 2_000
"""Batched mode: records in one transaction at most."""
DEFAULT_FLUSH_INTERVAL: Final = 0.1
"""...or this many seconds after the first of them arrived."""
DEFAULT_MAX_PENDING: Final = 20_000
"""Records buffered or being written at most; beyond it new records are dropped (and counted)."""
RETRY_DELAYS: Final = (0.2, 1.0, 3.0)
"""Seconds before each new attempt at a batch whose transaction failed."""
CRASH_DRAIN_TIMEOUT: Final = 2.0
"""How long the crash path waits for buffered records to commit."""
DROP_LOG_INTERVAL: Final = 10.0


@dataclass
class WriterStats:
    written: int = 0
    dropped: int = 0
    failed: int = 0


class AuditWriter:
    """Buffers records on the event loop and commits them in batches through a :class:`Store`."""

    def __init__(
        self,
        store: Store,
        rows: RowBuilder,
        *,
        durability: Durability = "batched",
        chained: bool = True,
        signer: Ed25519PrivateKey | None = None,
        clock: Clock = SYSTEM_CLOCK,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_pending: int = DEFAULT_MAX_PENDING,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        sink: ProcessSink | None = None,
    ) -> None:
        self.store = store
        self.sink = sink
        """``audit.writer: process``: batches go to this writer process instead of the store's
        thread (see :mod:`helio_proxy.audit.sink`); set before :meth:`start`."""
        self.rows = rows
        self.durability: Durability = durability
        self.chained = chained
        self.signer = signer
        self.clock = clock
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.retry_delays = tuple(retry_delays)
        self.stats = WriterStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer: list[Any] = []
        """What waits for a batch: rows built on the event loop when submitted (see :meth:`submit`),
        or, with a writer process, each record's pickled field values (it builds their rows)."""
        self._waiters: list[asyncio.Future[bool]] = []
        self._pending = 0
        self._inflight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._scheduled = False
        self._progress = asyncio.Event()
        self._last_drop_log = float("-inf")
        self._last_submitted: Future[int] | None = None
        self.failure: str | None = None
        """Why the last batch could not be committed (a full disk, a lost database); ``None`` once
        one commits again."""

    def pending(self) -> int:
        """Records buffered or being written now (the metrics' audit queue depth)."""
        return self._pending

    @property
    def strict(self) -> bool:
        return self.durability == "strict"

    def start(self) -> None:
        """Bind to the running loop and arm the crash drain."""
        self._loop = asyncio.get_running_loop()
        atexit.register(self.drain_sync)

    def submit(self, record: AnyRecord) -> asyncio.Future[bool] | None:
        """Queue ``record``. In strict mode, return a future that resolves once it is committed
        (``True``) or could not be (``False``). Never blocks, never raises.

        The record's row (its JSON columns, redaction) is built here, on the event loop, not on the
        store's writer thread: the two share the interpreter lock, and a writer building 50 rows
        at once held it for about half a millisecond, which a call arriving meanwhile waited out
        (most of the c=1 p99). A forwarded call's record reaches this after its reply is written
        (``Auditor(after_reply=True)``), so the agent does not wait for it either. The writer
        thread keeps what needs the store: sequence numbers, the hash chain, the insert.

        With a writer process (:attr:`sink`) only the record's pickle is kept here: the process
        builds the row, on another core."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if self._pending >= self.max_pending:
            self._dropped(1)
            return None
        try:
            if self.sink is not None:
                # Pickled now, a few µs after this call's reply, not 50 at once when its batch
                # leaves: that would hold the loop for a third of a millisecond every 50 calls.
                item: Any = self.sink.pack(record)
            else:
                item = self.rows.build(record, "")  # created_at is set when its batch is written
        except Exception:
            log.exception("audit record %s could not be serialized; skipped", record.id)
            return None
        self._buffer.append(item)
        self._pending += 1
        if self.strict:
            waiter: asyncio.Future[bool] = loop.create_future()
            self._waiters.append(waiter)
            if self._inflight == 0 and not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._dispatch)
            return waiter
        self._schedule_batch(loop)
        return None

    async def flush(self) -> None:
        """Send what is buffered and wait until nothing is being written."""
        while self._buffer or self._inflight:
            if self._buffer and not (self.strict and self._inflight):
                self._dispatch()
            self._progress.clear()
            await self._progress.wait()

    async def close(self) -> None:
        """Write everything still buffered; disarm the crash drain; stop the writer process."""
        await self.flush()
        atexit.unregister(self.drain_sync)
        if self.sink is not None:
            await self.sink.close()

    def drain_sync(self, timeout: float = CRASH_DRAIN_TIMEOUT) -> None:
        """The crash path (``atexit``): commit what is still buffered, waiting at most ``timeout``."""
        records, self._buffer = self._buffer, []
        if self.sink is not None and records:
            # No loop to talk to the writer process any more: this process commits what it still
            # holds itself (the process commits what it was given once its input ends).
            records = [self.rows.build_fields(self.sink.unpack(blob), "") for blob in records]
        if records:
            self._last_submitted = self.store.submit(self._job(records))
        last = self._last_submitted
        if last is None:
            return
        try:
            last.result(timeout)
        except Exception:
            log.exception("audit records buffered at exit could not be written")

    # -- internals ---------------------------------------------------------------------------

    def _schedule_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Batched mode: send the buffer as a batch once it holds ``batch_size`` records and fewer
        than :data:`MAX_INFLIGHT_BATCHES` are being written (else a commit sends it, see
        :meth:`_done`); a smaller buffer leaves ``flush_interval`` after its first record."""
        if len(self._buffer) >= self.batch_size:
            if self._inflight < MAX_INFLIGHT_BATCHES:
                self._dispatch()
        elif self._timer is None:
            self._timer = loop.call_later(self.flush_interval, self._dispatch)

    def _dispatch(self) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        if self.strict or len(self._buffer) <= MAX_BATCH:
            records, waiters = self._buffer, self._waiters
            self._buffer, self._waiters = [], []
        else:  # batched mode has no waiters
            records, self._buffer, waiters = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:], []
        self._send(records, waiters, 0)

    def _send(self, records: list[Any], waiters: list[asyncio.Future[bool]], attempt: int) -> None:
        loop = self._loop
        assert loop is not None
        self._inflight += 1
        if self.sink is not None:
            sent = self.sink.send(records, resend=attempt > 0)
            sent.add_done_callback(lambda result: self._done(result, records, waiters, attempt))
            return
        future = self.store.submit(self._job(records))
        self._last_submitted = future

        def done(result: Future[int]) -> None:
            # After a crash the loop is gone and nothing is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._done, result, records, waiters, attempt)

        future.add_done_callback(done)

    def _done(
        self,
        result: Future[int] | asyncio.Future[int],
        records: list[Any],
        waiters: list[asyncio.Future[bool]],
        attempt: int,
    ) -> None:
        self._inflight -= 1
        error = result.exception()
        self._note_health(error)
        if error is not None and attempt < len(self.retry_delays) and self._loop is not None:
            log.warning("audit batch of %d records failed (%s); retrying", len(records), error)
            self._inflight += 1  # still ours until the retry settles
            self._loop.call_later(self.retry_delays[attempt], self._retry, records, waiters, attempt + 1)
            return
        self._pending -= len(records)
        if error is not None:
            self.stats.failed += len(records)
            log.error("audit batch of %d records could not be written: %s", len(records), error)
        else:
            self.stats.written += result.result()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(error is None)
        if self.strict and self._buffer and self._inflight == 0:
            self._dispatch()
        elif (
            not self.strict
            and self._buffer
            and self._inflight < MAX_INFLIGHT_BATCHES
            and self._loop is not None
        ):
            self._schedule_batch(self._loop)  # what gathered while the writer was busy
        self._progress.set()

    def _note_health(self, error: BaseException | None) -> None:
        if error is None:
            if self.failure is not None:
                log.warning(
                    "audit store writable again; records are committed (it failed with: %s)", self.failure
                )
            self.failure = None
            return
        if self.failure is None:
            log.error(
                "audit store cannot be written: %s (records are retried; %s)",
                error,
                "calls are refused with audit_unavailable until it recovers"
                if self.strict
                else "they are lost if it does not recover",
            )
        # A writer process's failure comes as its own "Type: message" text, as a thread's would read.
        self.failure = str(error) if isinstance(error, SinkFailed) else f"{type(error).__name__}: {error}"

    def _retry(self, records: list[Any], waiters: list[asyncio.Future[bool]], attempt: int) -> None:
        self._inflight -= 1
        self._send(records, waiters, attempt)

    def _job(self, rows: Sequence[dict[str, Any]]) -> Callable[[Connection], int]:
        return write_job(
            rows,
            chained=self.chained,
            signer=self.signer,
            clock=self.clock,
            step_pause=None if self.strict else 0.0,
        )

    def _dropped(self, count: int) -> None:
        self.stats.dropped += count
        now = self.clock.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL:
            self._last_drop_log = now
            log.warning(
                "audit queue full (%d records pending): %d records dropped so far",
                self.max_pending,
                self.stats.dropped,
            )
