"""The periodic sweep that expires evidence and drops idle sessions between reads."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from helio_proxy.evidence.store import SessionStore

SWEEP_INTERVAL_SECONDS: Final = 60.0
"""How often the store is swept (expiry is also applied lazily on every read)."""

log = logging.getLogger(__name__)


async def run_sweeper(store: SessionStore, interval: float = SWEEP_INTERVAL_SECONDS) -> None:
    """Sweep ``store`` every ``interval`` seconds until cancelled; a failing sweep is logged, not fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            await store.sweep()
        except Exception:
            log.exception("session store sweep failed")
