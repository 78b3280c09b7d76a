"""``GET /session/{id}/state``: a session snapshot in its wire shape.

Two shapes exist. The full one carries our additions (``verified`` and ``call_id`` on evidence,
``call_id`` on completed calls, ``dependencies``). The reference SDK ``helio-client`` 0.16 builds
its entry dataclasses with ``Entry(**entry)``, so any field it does not know makes it reject the
whole answer; requests from it get the reference shape of each entry (it ignores extra top-level
fields, so ``dependencies`` stays).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from helio_proxy.evidence.model import SessionSnapshot

REFERENCE_CLIENT_AGENT: Final = "python-httpx/"
"""``User-Agent`` prefix of ``helio-client`` 0.16 (it sends httpx's default and nothing of its own)."""


def wants_reference_shape(headers: Mapping[str, str]) -> bool:
    """Whether the request comes from the reference SDK, which cannot read the full shape."""
    return headers.get("user-agent", "").startswith(REFERENCE_CLIENT_AGENT)


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
