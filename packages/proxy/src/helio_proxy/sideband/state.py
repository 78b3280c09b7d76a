"""``GET /session/{id}/state``: a session snapshot in its wire shape.

Two views exist. The default one keeps each entry in the reference's shape, because the reference
SDK ``helio-client`` 0.16 builds its entry dataclasses with ``Entry(**entry)`` and rejects the
whole answer on any field it does not know (it ignores extra top-level fields, so
``dependencies`` is always there). ``?view=full``, which our SDK asks for, adds ``verified`` and
``call_id`` to evidence entries and ``call_id`` to completed calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from helio_proxy.evidence.model import SessionSnapshot

FULL_VIEW: Final = "full"
"""``GET /session/{id}/state?view=full`` selects the full view."""


def wants_full_view(query: Mapping[str, str]) -> bool:
    """Whether the client asked for our additions in each entry."""
    return query.get("view") == FULL_VIEW


def render_state(snapshot: SessionSnapshot, *, reference_shape: bool = False) -> dict[str, Any]:
    """The state body; expired evidence is already absent from ``snapshot.evidence``."""
    evidence: dict[str, Any] = {}
    for key, entry in snapshot.evidence.items():
        item: dict[str, Any] = {
            "evidence_key": entry.evidence_key,
            "data": entry.data,
            "tool_name": entry.tool_name,
            "timestamp": entry.timestamp,
            "expires_at": entry.expires_at,
        }
        if not reference_shape:
            item["verified"] = entry.verified
            item["call_id"] = entry.call_id
        evidence[key] = item
    completed: list[dict[str, Any]] = []
    for call in snapshot.completed_tools:
        row: dict[str, Any] = {
            "tool_name": call.tool_name,
            "timestamp": call.timestamp,
            "succeeded": call.succeeded,
        }
        if not reference_shape:
            row["call_id"] = call.call_id
        completed.append(row)
    return {
        "session_id": snapshot.session_id,
        "evidence": evidence,
        "context": dict(snapshot.context),
        "completed_tools": completed,
        "dependencies": [
            {"tool_name": tool, "requires": list(requires)}
            for tool, requires in snapshot.dependencies.items()
        ],
    }
