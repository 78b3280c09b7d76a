"""The audit trail of a running proxy: its store, writer, call recorder and retention sweeps."""

from __future__ import annotations

from collections.abc import Callable

from helio_proxy.audit.chain import load_private_key
from helio_proxy.audit.clock import SYSTEM_CLOCK, Clock
from helio_proxy.audit.recorder import Auditor
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.retention import RetentionSweeper
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.audit.writer import AuditWriter
from helio_proxy.config import LoadedConfig
from helio_proxy.store import Store, StoreError, create_store, store_url
from helio_proxy.store.sqlite import SqliteStore


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
        self.store: Store = create_store(store_url(audit, config.store), durability=audit.durability)
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
        return f"Audit: {self.store.description} (retention: {self.retention}, durability: {self.durability})"

    async def start(self) -> None:
        """Open (and migrate) the store, start the writer, sweep once, schedule the daily sweep."""
        await self.store.open()
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
