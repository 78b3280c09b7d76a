"""Which authenticated agent a session belongs to (``listen.auth``).

A session id is bound to the first agent seen with it (the agent whose ``initialize`` minted an
``Mcp-Session-Id``, or the first to call with a governance session id); another agent presenting
it is refused. The table lives in the process and is bounded: the least recently used binding is
forgotten past :data:`MAX_BINDINGS` (a forgotten id is bound again on its next use).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

MAX_BINDINGS: Final = 100_000
"""Session ids remembered per table (least recently used ones are forgotten first)."""


class SessionOwners:
    """Session id → agent id, first use wins."""

    def __init__(self, capacity: int = MAX_BINDINGS) -> None:
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def claim(self, session_id: str, agent_id: str) -> str | None:
        """Bind ``session_id`` to ``agent_id`` if it is free; ``None`` when ``agent_id`` may use it,
        else the agent that owns it."""
        owner = self._owners.get(session_id)
        if owner is None:
            self._owners[session_id] = agent_id
            if len(self._owners) > self._capacity:
                self._owners.popitem(last=False)
            return None
        self._owners.move_to_end(session_id)
        return None if owner == agent_id else owner

    def forget(self, session_id: str) -> None:
        """The session ended (``DELETE``)."""
        self._owners.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._owners)
