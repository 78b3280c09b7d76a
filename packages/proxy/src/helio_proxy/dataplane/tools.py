"""Which tools an upstream lists now, refreshed at most once per unknown-tool call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, cast

from helio_proxy.errors import UpstreamError

log = logging.getLogger("helio_proxy.dataplane.tools")

Refresh = Callable[[], Awaitable[list[Any]]]
"""Lists the upstream's tools (every page) and takes them into the baselines; returns the definitions."""


def tool_names(tools: Iterable[Any]) -> set[str]:
    names: set[str] = set()
    for item in tools:
        if isinstance(item, Mapping):
            name = cast(Mapping[str, Any], item).get("name")
            if isinstance(name, str) and name:
                names.add(name)
    return names


class ToolInventory:
    """The names in the upstream's ``tools/list``, as last seen (a refresh replaces them)."""

    def __init__(
        self, refresh: Refresh | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.refresh = refresh
        self.listed: set[str] | None = None
        """``None`` until a list was seen."""
        self.refreshes = 0
        self._clock = clock
        self._last: float | None = None
        self._inflight: asyncio.Future[set[str] | None] | None = None

    def observe(self, tools: Iterable[Any]) -> None:
        """A ``tools/list`` page relayed to an agent: its tools are listed (pages add up)."""
        names = tool_names(tools)
        self.listed = names if self.listed is None else self.listed | names

    def known(self, name: str) -> bool:
        """Whether ``name`` is on the tool list as last seen (what :meth:`lists` answers at once)."""
        return self.listed is not None and name in self.listed

    async def lists(self, name: str, *, min_interval: float) -> bool | None:
        """Whether the upstream lists ``name``, refreshing once if it is not known; ``None`` when
        that cannot be told (no way to list, or the list could not be fetched)."""
        if self.known(name):
            return True
        if self.refresh is None:
            return None if self.listed is None else False
        if self._inflight is None and self._last is not None and self._clock() - self._last < min_interval:
            return None if self.listed is None else False
        listed = await self._refreshed()
        if listed is None:
            return None
        return name in listed

    async def _refreshed(self) -> set[str] | None:
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        future: asyncio.Future[set[str] | None] = asyncio.get_running_loop().create_future()
        self._inflight = future
        try:
            assert self.refresh is not None
            self.refreshes += 1
            names = tool_names(await self.refresh())
            self.listed = names
            future.set_result(names)
        except (UpstreamError, Exception) as exc:  # the forward will meet the same upstream
            log.warning("tools/list refresh failed: %s", exc)
            future.set_result(None)
        finally:
            self._last = self._clock()
            self._inflight = None
        return future.result()


class ToolLister(Protocol):
    async def list_tools(self) -> list[Any]: ...


class RecordingLister:
    """A full ``tools/list`` source (the primer's) whose every listing becomes the inventory.

    Listings are shared: a caller arriving while one is in flight (the primer's first listing at
    boot, say) takes its result instead of starting another, which for a stdio upstream would
    mean another session with the child.
    """

    def __init__(self, source: ToolLister, inventory: ToolInventory) -> None:
        self.source = source
        self.inventory = inventory
        self._inflight: asyncio.Future[list[Any]] | None = None

    async def list_tools(self) -> list[Any]:
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._inflight = future
        try:
            tools = await self.source.list_tools()
            self.inventory.listed = tool_names(tools)
            future.set_result(tools)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: nobody else may be waiting
            raise
        finally:
            self._inflight = None
        return tools
