"""Reading the proxy's call id from a ``tools/call`` result.

The Helio proxy puts its id for every allowed ``tools/call`` in the result's ``_meta`` under
:data:`CALL_ID_META_KEY`. Evidence marked with that id (``mark_evidence(..., call_id=...)``) is
bound to exactly that call: the proxy verifies it against the call's tool, outcome and arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

CALL_ID_META_KEY: Final = "io.gethelio/call-id"
"""The ``_meta`` key of a ``tools/call`` result that holds the proxy's call id."""


def _meta_of(result: Any) -> Any:
    if isinstance(result, Mapping):
        if "_meta" in result:
            return result["_meta"]  # pyright: ignore[reportUnknownVariableType]
        inner: Any = result.get("result")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return _meta_of(inner) if isinstance(inner, Mapping) else None
    # The official MCP SDK's CallToolResult (pydantic) exposes ``_meta`` as ``meta``.
    meta = getattr(result, "meta", None)
    if meta is None:
        meta = getattr(result, "_meta", None)
    return meta


def call_id_of(result: Any) -> str | None:
    """The proxy's call id of a ``tools/call`` result, or ``None`` when it carries none.

    ``result`` is the MCP SDK's ``CallToolResult``, a result dict (``{"content": ..., "_meta": ...}``)
    or a whole JSON-RPC response (``{"jsonrpc": "2.0", "id": 1, "result": {...}}``). A result that
    did not pass through a Helio proxy (or was blocked) has no call id.
    """
    meta = _meta_of(result)
    if not isinstance(meta, Mapping):
        return None
    value: Any = meta.get(CALL_ID_META_KEY)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return value if isinstance(value, str) and value else None


def structured_content(result: Any) -> Any:
    """A result's ``structuredContent`` (``None`` when it has none)."""
    if isinstance(result, Mapping):
        outer = cast("Mapping[str, Any]", result)
        inner: Any = outer.get("result", outer)
        return (
            cast("Mapping[str, Any]", inner).get("structuredContent") if isinstance(inner, Mapping) else None
        )
    found: Any = getattr(result, "structured_content", None) or getattr(result, "structuredContent", None)
    return found
