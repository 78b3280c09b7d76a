"""One audit writer process for the several-writers test: ``python -m tests.e2e.audit_writer_process
URL WRITER COUNT START_AT DURABILITY``.

Opens its own PostgreSQL store and :class:`~helio_proxy.audit.writer.AuditWriter` (as a replica
does), waits until ``START_AT`` (epoch seconds, shared by every writer so they overlap), then
writes ``COUNT`` tool_call records with ``session_id`` ``writer-N`` and ``metadata.i`` 0..COUNT-1,
in small batches so the writers' transactions interleave.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import cast

from helio_proxy.audit.records import ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.audit.writer import AuditWriter
from helio_proxy.store import Durability, create_store


async def write(url: str, writer_id: int, count: int, start_at: float, durability: Durability) -> None:
    store = create_store(url, durability=durability)
    await store.open()
    writer = AuditWriter(store, RowBuilder(Redactor()), durability=durability, batch_size=10)
    writer.start()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    waiters: list[asyncio.Future[bool]] = []
    for i in range(count):
        record = ToolCallRecord(
            timestamp=datetime.now(UTC),
            session_id=f"writer-{writer_id}",
            tool_name="get_weather",
            tool_input={"city": f"city-{i}"},
            success=True,
            metadata={"writer": writer_id, "i": i},
        )
        waiter = writer.submit(record)
        if waiter is not None:
            waiters.append(waiter)
        await asyncio.sleep(0.001 if i % 5 == 4 else 0)
    await writer.close()
    assert all(await asyncio.gather(*waiters))
    assert writer.stats.written == count, writer.stats
    await store.close()


if __name__ == "__main__":
    url, writer_id, count, start_at, durability = sys.argv[1:6]
    asyncio.run(write(url, int(writer_id), int(count), float(start_at), cast(Durability, durability)))
