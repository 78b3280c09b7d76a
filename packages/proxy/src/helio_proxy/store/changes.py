"""The change bus: state one proxy changes in the store, seen by every proxy on that store at once.

A write job that changes shared state other proxies keep in memory (the kill switch, an accepted
tool baseline, a resolved approval) calls :func:`publish` inside its transaction: it appends a row
to ``store_changes`` and, on PostgreSQL, sends ``NOTIFY`` (delivered when the transaction
commits, never before). Each running proxy has one :class:`ChangeBus` that hands every change to
the subscribers of its channel:

* **PostgreSQL**: a dedicated connection ``LISTEN``\\ s (it reconnects by itself, and after a
  reconnect tells every subscriber to resync, since notifications sent meanwhile are lost), plus a
  slow poll of ``store_changes`` (every :data:`PG_HEAL_INTERVAL` seconds) that heals a missed
  notification;
* **SQLite**: there is no notification between processes; the bus polls ``store_changes`` every
  :data:`SQLITE_POLL_INTERVAL` seconds (one indexed ``SELECT`` of the rows after the last id seen),
  and skips the read while the WAL shows no commit since the last one
  (:meth:`~helio_proxy.store.sqlite.SqliteStore.change_stamp`, one ``stat``), reading at least
  every :data:`FORCED_READ_INTERVAL` seconds whatever the WAL shows.

Subscribers treat a change as "reread your state" (they are idempotent), so a change delivered
twice (notification and poll) or out of order costs one extra read, nothing more. The channel a
database's proxies ``LISTEN`` on is named from the database and schema, so test schemas (or two
Helio deployments) sharing one PostgreSQL server do not wake each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from helio_proxy.store.base import Store, time_text

log = logging.getLogger("helio.store.changes")

KILL_SWITCH: Final = "kill_switch"
BASELINE_ACCEPTED: Final = "baseline_accepted"
APPROVAL_RESOLVED: Final = "approval_resolved"
CHANNELS: Final = (KILL_SWITCH, BASELINE_ACCEPTED, APPROVAL_RESOLVED)
"""Every channel published in this version."""

PG_HEAL_INTERVAL: Final = 2.0
"""Seconds between polls of ``store_changes`` on PostgreSQL (the fallback of LISTEN/NOTIFY)."""
SQLITE_POLL_INTERVAL: Final = 0.05
"""Seconds between polls of ``store_changes`` on SQLite (one indexed read: ~0.1 ms)."""
FORCED_READ_INTERVAL: Final = 1.0
"""The poll reads at least this often even when the store's change stamp is unchanged (a write
the stamp cannot show, see ``SqliteStore.change_stamp``, waits at most this long). An idle
``helio start`` on SQLite used 2.1-2.2 % of a core reading 20 times a second; with the stamp, 0.7 %."""
RECONNECT_DELAYS: Final = (0.1, 0.5, 1.0, 2.0)
"""Seconds before each attempt to reopen the LISTEN connection (the last one repeats)."""
RETAIN: Final = timedelta(hours=1)
"""How long a change row is kept (a proxy only needs the rows since its last poll)."""
PRUNE_EVERY: Final = 600.0
"""Seconds between prunes of old change rows."""
REORDER_WINDOW: Final = 64
"""On PostgreSQL, ids are taken before commit, so a row with a smaller id can commit after a larger
one: each poll looks this many ids back, skipping the ones already handled."""

_CHANNEL_SQL: Final = "'helio_' || substr(md5(current_database() || '.' || current_schema()), 1, 16)"
"""The NOTIFY channel of the database and schema a connection uses."""

Handler = Callable[[dict[str, Any]], Awaitable[object]]
"""Called with a change's payload (plus ``channel`` and ``id``; ``{"resync": True}`` after a gap)."""


def publish(conn: Connection, channel: str, payload: dict[str, Any] | None = None) -> None:
    """Record a change on ``channel`` inside the caller's write transaction (and NOTIFY on PostgreSQL)."""
    body = json.dumps(payload or {}, separators=(",", ":"), sort_keys=True)
    row = conn.execute(
        text(
            "INSERT INTO store_changes (channel, payload, created_at) VALUES (:channel, :payload, :at) RETURNING id"
        ),
        {"channel": channel, "payload": body, "at": time_text(datetime.now(UTC))},
    ).one()
    if conn.dialect.name == "postgresql":
        message = json.dumps({"id": int(row[0]), "channel": channel, "payload": payload or {}})
        if len(message) > 7000:  # NOTIFY payloads are capped at 8000 bytes: the poll fetches it
            message = json.dumps({"id": int(row[0]), "channel": channel, "payload": {}})
        conn.execute(text(f"SELECT pg_notify({_CHANNEL_SQL}, :message)"), {"message": message})


def _rows_after(low: int) -> Callable[[Connection], list[tuple[int, str, str | None]]]:
    def job(conn: Connection) -> list[tuple[int, str, str | None]]:
        rows = conn.execute(
            text("SELECT id, channel, payload FROM store_changes WHERE id > :low ORDER BY id LIMIT 1000"),
            {"low": low},
        )
        return [(int(r[0]), str(r[1]), r[2]) for r in rows]

    return job


def _last_id(conn: Connection) -> int:
    return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM store_changes")).scalar_one())


def _prune(cutoff: datetime) -> Callable[[Connection], int]:
    def job(conn: Connection) -> int:
        return conn.execute(
            text("DELETE FROM store_changes WHERE created_at < :cutoff"), {"cutoff": time_text(cutoff)}
        ).rowcount

    return job


def _payload(raw: str | None) -> dict[str, Any]:
    try:
        value: Any = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def listen_dsn(store_url: str) -> str:
    """A psycopg connection string for a store URL (``postgresql+psycopg://`` → ``postgresql://``)."""
    url = make_url(store_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class ChangeBus:
    """Delivers the store's changes to this proxy's subscribers (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        url: str | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self.store = store
        self.url = url
        """The store's URL (PostgreSQL: the LISTEN connection opens it)."""
        self.listening = store.dialect == "postgresql" and url is not None
        self.poll_interval = poll_interval or (PG_HEAL_INTERVAL if self.listening else SQLITE_POLL_INTERVAL)
        self._window = REORDER_WINDOW if store.dialect == "postgresql" else 0
        self._handlers: dict[str, list[Handler]] = {}
        self._high = 0
        self._seen: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()
        """Set while the LISTEN connection is up (PostgreSQL)."""
        self.listener_pid: int | None = None
        """The server process of the LISTEN connection (PostgreSQL; tests end it to see a reconnect)."""
        self.delivered = 0
        """Changes handed to subscribers so far (notifications and polls)."""
        self.healed = 0
        """Changes the poll found that no notification had delivered."""

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.setdefault(channel, []).append(handler)

    async def start(self) -> None:
        """Start after the store is open: changes from now on are delivered."""
        self._high = await self.store.read(_last_id)
        self._tasks.append(asyncio.create_task(self._poll(), name="helio-change-poll"))
        if self.listening:
            self._tasks.append(asyncio.create_task(self._listen(), name="helio-change-listen"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.connected.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _deliver(self, change_id: int | None, channel: str, payload: dict[str, Any]) -> None:
        if change_id is not None:
            if change_id in self._seen or (self._window == 0 and change_id <= self._high):
                return
            self._seen.add(change_id)
            self._high = max(self._high, change_id)
            floor = self._high - self._window
            if len(self._seen) > 4 * (self._window + 1):
                self._seen = {seen for seen in self._seen if seen > floor}
        self.delivered += 1
        for handler in self._handlers.get(channel, []):
            try:
                await handler({**payload, "channel": channel, "id": change_id})
            except Exception:
                log.exception("a subscriber of change channel %s failed", channel)

    async def resync(self) -> None:
        """Tell every subscriber to reread its state (after notifications may have been lost)."""
        for channel in list(self._handlers):
            await self._deliver(None, channel, {"resync": True})

    async def poll_once(self) -> int:
        """One poll of ``store_changes``; returns how many new changes it delivered."""
        low = max(0, self._high - self._window)
        found = 0
        for change_id, channel, raw in await self.store.read(_rows_after(low)):
            if change_id in self._seen or (self._window == 0 and change_id <= self._high):
                continue
            found += 1
            await self._deliver(change_id, channel, _payload(raw))
        if found and self.listening:
            self.healed += found
        return found

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        pruned = read_at = loop.time()
        read_stamp: Hashable | None = None
        failing = False
        while True:
            await asyncio.sleep(self.poll_interval)
            # Taken before the read: a write after it changes the next stamp.
            stamp = self.store.change_stamp()
            if (
                stamp is not None
                and stamp == read_stamp
                and not failing
                and loop.time() - read_at < FORCED_READ_INTERVAL
            ):
                continue  # nothing was written since the last read
            try:
                await self.poll_once()
                read_stamp, read_at = stamp, loop.time()
                if loop.time() - pruned >= PRUNE_EVERY:
                    pruned = loop.time()
                    await self.store.write(_prune(datetime.now(UTC) - RETAIN))
            except Exception as exc:  # the store may be briefly unreachable; keep polling
                if not failing:
                    log.warning("the change bus could not read the store: %s", exc)
                failing = True
            else:
                if failing:
                    log.warning("the change bus reads the store again")
                    failing = False
                    await self.resync()

    async def _listen(self) -> None:
        import psycopg
        from psycopg import sql

        assert self.url is not None
        dsn = listen_dsn(self.url)
        attempt = 0
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    dsn, autocommit=True, application_name="helio-changes"
                ) as conn:
                    cursor = await conn.execute(
                        "SELECT 'helio_' || substr(md5(current_database() || '.' || current_schema()), 1, 16)"
                    )
                    row = await cursor.fetchone()
                    assert row is not None
                    channel = str(row[0])
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.listener_pid = conn.info.backend_pid
                    self.connected.set()
                    attempt = 0
                    if not first:
                        log.warning("the change bus listens again; resyncing")
                        await self.poll_once()
                        await self.resync()
                    first = False
                    async for notice in conn.notifies():
                        await self._on_notify(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                if attempt == 0:
                    log.warning("the change bus lost its LISTEN connection: %s (reconnecting)", exc)
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                first = False
                await asyncio.sleep(delay)

    async def _on_notify(self, raw: str) -> None:
        message = _payload(raw)
        change_id = message.get("id")
        channel = message.get("channel")
        if not isinstance(channel, str) or not isinstance(change_id, int):
            return
        payload = message.get("payload")
        await self._deliver(change_id, channel, payload if isinstance(payload, dict) else {})  # pyright: ignore[reportUnknownArgumentType]
