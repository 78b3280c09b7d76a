"""The audit trail of a running proxy: its store, writer, call recorder and retention sweeps."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from helio_proxy.audit.chain import load_private_key
from helio_proxy.audit.clock import SYSTEM_CLOCK, Clock
from helio_proxy.audit.recorder import Auditor
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.retention import RetentionSweeper
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.audit.sink import ProcessSink, SinkSetup, signer_pem
from helio_proxy.audit.writer import AuditWriter
from helio_proxy.config import LoadedConfig
from helio_proxy.store import Store, StoreError, create_store, store_url
from helio_proxy.store.sqlite import SqliteStore

WRITER_PROCESS_CPUS_PER_WORKER: Final = 2
"""``audit.writer: auto`` starts writer processes when the machine has at least this many usable
CPUs per worker: one for each worker's event loop, one for its writer process. On 2 CPUs one
worker with a writer process served 11-48 % more calls/s than with a writer thread, and once the
process paced its batches (:data:`~helio_proxy.audit.sink.STEP_PAUSE`) and ran at a lower
priority (:data:`~helio_proxy.audit.sink.NICENESS`) its c=1 p50 and p99 were no worse. Two
workers, each with a writer process (four busy processes on two CPUs), served fewer calls/s than
with writer threads before the pacing, and 5 % more after it, but with a c=1 median 0.1 ms higher
(docs/performance.md, the tenth and twelfth looks)."""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class AuditTrail:
    """Built from a config without I/O; :meth:`start` opens the store, :meth:`stop` drains it."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        config_sha256: Callable[[], str | None] | None = None,
    ) -> None:
        """``config_sha256``: the hash of the config in force now (default: ``loaded``'s)."""
        config = loaded.config
        audit = config.audit
        self.retention = audit.retention
        self.durability = audit.durability
        self.writer_mode = audit.writer
        self._store_url = store_url(audit, config.store)
        self.store: Store = create_store(self._store_url, durability=audit.durability)
        signer = load_private_key(audit.signing_key) if audit.signing_key else None
        rows = RowBuilder(Redactor(audit.redact), include_responses=audit.include_responses)
        self.writer = AuditWriter(
            self.store,
            rows,
            durability=audit.durability,
            chained=audit.hash_chain,
            signer=signer,
            clock=clock,
        )
        self.auditor = Auditor(
            self.writer,
            session=config.session,
            environment=config.environment,
            config_sha256=config_sha256 or loaded.sha256,
            clock=clock,
            # strict: no call goes upstream while its record could not be kept (fail closed)
            unavailable=(lambda: self.writer.failure) if audit.durability == "strict" else None,
            after_reply=audit.durability == "batched",
        )
        self.sweeper = RetentionSweeper(self.store, audit.retention.seconds, clock=clock)

    def startup_line(self) -> str:
        writer = "a writer process" if self.writer.sink is not None else "a writer thread"
        return (
            f"Audit: {self.store.description} (retention: {self.retention}, durability: {self.durability},"
            f" {writer})"
        )

    def uses_process(self, own_process: bool, workers: int = 1, cpus: int | None = None) -> bool:
        """Whether batches go to a writer process. ``audit.writer: auto`` chooses one for a proxy
        that is a process of its own (``own_process``: ``helio start``) with batched durability,
        when this machine's usable CPUs (``cpus``) leave each of its ``workers`` a core for its event
        loop and one for its writer process (two per worker); else a writer thread (see docs/audit.md for what each
        costs where cores are short)."""
        if self.writer_mode != "auto":
            return self.writer_mode == "process"
        if not own_process or self.durability != "batched":
            return False
        return (usable_cpus() if cpus is None else cpus) >= WRITER_PROCESS_CPUS_PER_WORKER * workers

    async def start(self, *, own_process: bool = False, workers: int = 1) -> None:
        """Open (and migrate) the store, start the writer (and its process: see :meth:`uses_process`),
        sweep once, schedule the daily sweep."""
        await self.store.open()
        if self.uses_process(own_process, workers):
            writer = self.writer
            writer.sink = ProcessSink(
                SinkSetup(self._store_url, writer.rows, writer.chained, signer_pem(writer.signer))
            )
            await writer.sink.start()
        self.writer.start()
        await self.sweeper.sweep()
        self.sweeper.start()

    async def stop(self) -> None:
        """Write every buffered record, then close the store."""
        await self.sweeper.stop()
        await self.writer.close()
        await self.store.close()


def open_existing_store(loaded: LoadedConfig) -> Store:
    """Open the store a config points at for reading (CLI); a missing SQLite file is an error."""
    config = loaded.config
    store = create_store(store_url(config.audit, config.store))
    if isinstance(store, SqliteStore) and not store.path.exists():
        raise StoreError(f"no audit database at {store.path} (has the proxy run with this config?)")
    store.open_sync()
    return store
