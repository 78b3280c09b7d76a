"""A supervised connection to a message-based upstream, one per downstream session.

A :class:`Channel` connects (spawns a child, opens an SSE connection), writes messages, and
reports what it reads to its :class:`ChannelEvents` (the session). When the connection is lost
it reports that (requests in flight fail), then reconnects following its :class:`RestartPolicy`,
lets the session re-establish MCP state on the fresh connection, and only then takes messages
again. Messages sent meanwhile wait for it; once it has given up they fail with
``failure_reason: not_running``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from helio_proxy.errors import UpstreamError, UpstreamExited

log = logging.getLogger("helio_proxy.upstream")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How a lost channel is reconnected: ``retries`` attempts, ``base_delay`` doubling each time.

    The attempt count starts again once a connection has stayed up for ``healthy_after`` seconds.
    """

    retries: int = 3
    base_delay: float = 1.0
    healthy_after: float = 60.0

    def delay(self, attempt: int) -> float:
        return self.base_delay * (2**attempt)


class ChannelState(Enum):
    STARTING = "starting"  # first connect in progress
    READY = "ready"  # connected: messages flow both ways
    RESTARTING = "restarting"  # lost; a reconnect is pending and sends wait for it
    STOPPED = "stopped"  # closed by the proxy, or the restart policy gave up


class ChannelEvents(Protocol):
    """What a channel reports to the session that owns it."""

    def on_message(self, raw: bytes) -> None:
        """One message from the server (its bytes, one JSON value)."""
        ...

    def on_oversized(self, limit: int) -> None:
        """The server sent a message longer than ``limit`` bytes (not read)."""
        ...

    def on_lost(self, error: UpstreamError) -> None:
        """The connection is gone: fail whatever waits on it with ``error``."""
        ...

    async def on_reconnected(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """A fresh connection is up: re-establish the MCP session on it before traffic resumes."""
        ...

    def on_stopped(self, reason: str) -> None:
        """The restart policy gave up; the channel stays down."""
        ...


def not_running(what: str) -> UpstreamExited:
    return UpstreamExited(f"{what} is not running", failure_reason="not_running")


class Channel(ABC):
    """One supervised connection to the upstream, for one session.

    Subclasses connect (``_connect``), write one message (``_write``), tear down (``_disconnect``),
    call :meth:`deliver` for every message they read and :meth:`connection_lost` once when the
    connection ends (after delivering everything it carried).
    """

    def __init__(
        self,
        events: ChannelEvents,
        *,
        label: str,
        policy: RestartPolicy,
        ready_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.events = events
        self.label = label
        self.policy = policy
        self.ready_timeout = ready_timeout
        self.state = ChannelState.STARTING
        self.restarts = 0
        """Reconnects so far (for logs and tests)."""
        self._clock = clock
        self._sleep = sleep
        self._ready = asyncio.Event()
        self._lost: asyncio.Future[UpstreamError] | None = None
        self._attempts = 0
        self._up_since = 0.0
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    # -- subclass hooks ------------------------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> None:
        """Connect (spawn); raise :class:`UpstreamError` when it cannot."""

    @abstractmethod
    async def _write(self, data: bytes) -> None:
        """Write one message; raise ``OSError`` when the connection is broken."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Tear the current connection down (idempotent)."""

    def deliver(self, raw: bytes) -> None:
        self.events.on_message(raw)

    def connection_lost(self, error: UpstreamError) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(error)

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """First connect (no retry: the caller reports the failure)."""
        self._lost = asyncio.get_running_loop().create_future()
        try:
            await self._connect()
        except BaseException:
            self.state = ChannelState.STOPPED
            self._ready.set()
            await self._disconnect()
            raise
        self._up_since = self._clock()
        self.state = ChannelState.READY
        self._ready.set()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"helio-channel-{self.label}")

    async def send(self, data: bytes) -> None:
        """Write one message; waits out a reconnect, fails with ``not_running`` when down."""
        if self.state in (ChannelState.STARTING, ChannelState.RESTARTING):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ready_timeout):
                    await self._ready.wait()
        if self.state is not ChannelState.READY:
            raise not_running(f"upstream {self.label}")
        try:
            await self._locked_write(data)
        except (OSError, RuntimeError) as exc:  # broken pipe, closed transport
            raise not_running(f"upstream {self.label}") from exc

    async def _locked_write(self, data: bytes) -> None:
        async with self._write_lock:
            await self._write(data)

    async def close(self) -> None:
        """Stop for good (no restart)."""
        self._closing = True
        self.state = ChannelState.STOPPED
        self._ready.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._disconnect()

    async def _supervise(self) -> None:
        assert self._lost is not None
        while True:
            error = await self._lost
            if self._closing:
                return
            self.state = ChannelState.RESTARTING
            self._ready.clear()
            log.warning("[%s] %s", self.label, error.message)
            self.events.on_lost(error)
            await self._disconnect()
            if self._clock() - self._up_since >= self.policy.healthy_after:
                self._attempts = 0
            if not await self._restart():
                return

    async def _restart(self) -> bool:
        while self._attempts < self.policy.retries:
            delay = self.policy.delay(self._attempts)
            self._attempts += 1
            log.warning(
                "[%s] restarting in %gs (attempt %d of %d)",
                self.label,
                delay,
                self._attempts,
                self.policy.retries,
            )
            await self._sleep(delay)
            self._lost = asyncio.get_running_loop().create_future()
            try:
                await self._connect()
                await self._replay(self._lost)
            except (UpstreamError, OSError, TimeoutError) as exc:
                log.warning("[%s] restart failed: %s", self.label, exc)
                await self._disconnect()
                continue
            self.restarts += 1
            self._up_since = self._clock()
            self.state = ChannelState.READY
            self._ready.set()
            log.warning("[%s] upstream restarted", self.label)
            return True
        reason = f"gave up after {self.policy.retries} restart attempts"
        log.error("[%s] %s", self.label, reason)
        self.state = ChannelState.STOPPED
        self._ready.set()
        self.events.on_stopped(reason)
        return False

    async def _replay(self, lost: asyncio.Future[UpstreamError]) -> None:
        """Re-establish the session on the fresh connection, unless that connection dies first."""
        replay = asyncio.ensure_future(self.events.on_reconnected(self._locked_write))
        try:
            async with asyncio.timeout(self.ready_timeout):
                await asyncio.wait({replay, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not replay.done():
                replay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await replay
        if lost.done():
            raise lost.result()
        replay.result()
