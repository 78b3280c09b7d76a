"""A proxy's kill switch: the state in memory, kept current by the change bus, and its waiters.

:meth:`KillSwitch.check` is what the gateway asks on every ``tools/call`` (a dict lookup, no
store read). :meth:`KillSwitch.engaged_for` is what a held call (approval, budget approval) waits
on beside its ticket, so engaging the switch releases it with the ``kill_switch`` block at once.

The state is read from the store at start and whenever the change bus delivers a
``kill_switch`` change (or asks for a resync); a read that fails makes the state *unreadable*,
which blocks every call until a read succeeds again (fail closed; the change bus's poll retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from helio_proxy.audit.rows import RowBuilder
from helio_proxy.killswitch.model import GLOBAL, KillState, kill_deny
from helio_proxy.killswitch.table import Source, Switch, load_engaged, switch_job
from helio_proxy.operator.events import EventBus
from helio_proxy.policy import Deny
from helio_proxy.store.base import Store, time_text

log = logging.getLogger("helio_proxy.killswitch")

NOT_LOADED = "not read yet"
RETRY_SECONDS = 1.0
"""How often an unreadable state is read again."""


class KillSwitch:
    """See the module docstring."""

    def __init__(
        self,
        store: Store,
        rows: RowBuilder,
        *,
        chained: bool = True,
        signer: Any = None,
        events: EventBus | None = None,
        environment: Callable[[], str | None] = lambda: None,
        config_sha256: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.store = store
        self.rows = rows
        self.chained = chained
        self.signer = signer
        self.events = events
        self.environment = environment
        self.config_sha256 = config_sha256
        self.state = KillState(unreadable=NOT_LOADED)
        """Fail closed until :meth:`start` has read the store."""
        self._waiters: list[tuple[str | None, str | None, asyncio.Future[Deny]]] = []
        self._reading = asyncio.Lock()
        self._retry: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Stop retrying an unreadable state (shutdown)."""
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None

    async def _retry_reads(self) -> None:
        while self.state.unreadable is not None:
            await asyncio.sleep(RETRY_SECONDS)
            await self.refresh()

    async def start(self) -> None:
        """Read the state once (a failure leaves it unreadable: every call blocked)."""
        await self.refresh()
        if self.state.unreadable is not None:
            log.error("kill switch state unreadable at start: every tools/call is blocked until it reads")
        for engagement in self.state.engaged.values():
            log.warning(
                "kill switch engaged (%s) by %s: %s", engagement.scope, engagement.actor, engagement.reason
            )

    async def refresh(self, _change: dict[str, Any] | None = None) -> KillState:
        """Reread the state from the store (the change bus's handler)."""
        async with self._reading:
            before = self.state
            try:
                engaged = await self.store.read(load_engaged)
            except Exception as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.state = KillState(unreadable=reason[:200])
                if before.unreadable is None:
                    log.error("kill switch state unreadable (%s): every tools/call is blocked", reason)
            else:
                self.state = KillState(engaged)
                if before.unreadable is not None and before.unreadable != NOT_LOADED:
                    log.warning("kill switch state readable again")
            self._changed(before)
        if self.state.unreadable is not None and (self._retry is None or self._retry.done()):
            # Fail closed, and keep trying: the state is read again every second until it reads.
            self._retry = asyncio.get_running_loop().create_task(self._retry_reads(), name="helio-kill-retry")
        return self.state

    def _changed(self, before: KillState) -> None:
        state = self.state
        if state != before and self.events is not None:
            self.events.publish("kill_switch", self.to_json())
        if not state.any_engaged:
            return
        kept: list[tuple[str | None, str | None, asyncio.Future[Deny]]] = []
        for upstream, agent, future in self._waiters:
            if future.done():
                continue
            found = state.blocking(upstream, agent)
            if found is not None:
                future.set_result(kill_deny(found))
            else:
                kept.append((upstream, agent, future))
        self._waiters = kept

    # -- the hot path --------------------------------------------------------------------------

    def check(self, upstream: str | None, agent: str | None) -> Deny | None:
        """The block for a call to ``upstream`` by ``agent`` now, or ``None``."""
        found = self.state.blocking(upstream, agent)
        return kill_deny(found) if found is not None else None

    def engaged_for(self, upstream: str | None, agent: str | None) -> asyncio.Future[Deny]:
        """A future settled with the ``kill_switch`` block once a scope covering this call is
        engaged (cancel it when the call no longer waits)."""
        future: asyncio.Future[Deny] = asyncio.get_running_loop().create_future()
        found = self.state.blocking(upstream, agent)
        if found is not None:
            future.set_result(kill_deny(found))
        else:
            self._waiters = [w for w in self._waiters if not w[2].done()]
            self._waiters.append((upstream, agent, future))
        return future

    # -- operators -----------------------------------------------------------------------------

    async def switch(
        self, scope: str, *, engaged: bool, actor: str, reason: str | None, source: Source
    ) -> bool:
        """Engage or release ``scope`` (audited, published); returns whether it changed. The
        state in memory is reread at once (other proxies reread it on the change bus)."""
        change = Switch(
            scope=scope,
            engaged=engaged,
            actor=actor,
            reason=reason,
            source=source,
            at=time_text(datetime.now(UTC)),
            environment=self.environment(),
            config_sha256=self.config_sha256(),
        )
        changed = await self.store.write(
            switch_job(change, self.rows, chained=self.chained, signer=self.signer)
        )
        if changed:
            log.warning(
                "kill switch %s (%s) by %s%s",
                "ENGAGED" if engaged else "released",
                scope,
                actor,
                f": {reason}" if reason else "",
            )
        await self.refresh()
        return changed

    def to_json(self) -> dict[str, Any]:
        state = self.state
        return {
            "engaged": state.any_engaged,
            "unreadable": state.unreadable,
            "scopes": [e.to_json() for e in sorted(state.engaged.values(), key=lambda e: e.scope)],
        }

    def gauge(self) -> Iterator[tuple[str, float]]:
        """``(scope, 1.0)`` per engaged scope, and ``global`` always (0 when not engaged) for
        ``helio_kill_switch_engaged``; an unreadable state reports ``global`` 1."""
        state = self.state
        yield GLOBAL, 1.0 if state.unreadable is not None or GLOBAL in state.engaged else 0.0
        for scope in sorted(state.engaged):
            if scope != GLOBAL:
                yield scope, 1.0
