"""``helio tools list`` and ``helio tools accept``: the stored tool baselines of a config's upstream."""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import UTC, datetime

from helio_proxy.baselines import (
    BASELINE_POLL_SECONDS,
    BaselineError,
    StoredTool,
    accept_pending,
    baseline_key,
    load_tools,
)
from helio_proxy.config import LoadedConfig
from helio_proxy.store import Store

SHORT_SHA = 12
"""Hex digits of a fingerprint shown (enough to tell definitions apart at a glance)."""


def upstream_key(loaded: LoadedConfig, name: str | None = None) -> str:
    """The ``tool_baselines.upstream`` key of the upstream called ``name``.

    ``name`` may be left out when the config has one upstream; with several (``upstreams:``) it
    is required. :class:`BaselineError` names the choices when it is missing or unknown.
    """
    upstreams = loaded.config.upstream_list
    names = [u.name for u in upstreams if u.name is not None]
    if name is None:
        if len(upstreams) > 1:
            raise BaselineError(
                f"the config has several upstreams; choose one with --upstream ({', '.join(names)})"
            )
        return baseline_key(upstreams[0].name)
    if name not in names:
        known = f"known: {', '.join(names)}" if names else "the config's single 'upstream' has no name"
        raise BaselineError(f"no upstream named {name!r} ({known})")
    return baseline_key(name)


def operator_name() -> str:
    """The OS user name (the default ``--by``)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment or the password database
        return "unknown"


def _when(stamp: str | None) -> str:
    """A stored time to the second (``2026-05-01T12:00:00Z``)."""
    return f"{stamp[:19]}Z" if stamp else "-"


def _state(tool: StoredTool) -> str:
    pending = tool.pending
    if pending is None:
        return "ok"
    aspects = ", ".join(pending.aspects)
    return (
        f"DRIFTED ({aspects}) to {pending.current.fingerprint[:SHORT_SHA]} since {_when(tool.pending_since)}"
    )


def _accepted(tool: StoredTool) -> str:
    if tool.accepted_at is None:
        return f"first seen {_when(tool.first_seen_at)}"
    return f"accepted by {tool.baseline.accepted_by or 'unknown'} at {_when(tool.accepted_at)}"


def render_tools(tools: Sequence[StoredTool], where: str) -> str:
    """The ``helio tools list`` table: tool, baseline fingerprint, drift state, provenance."""
    if not tools:
        return f"No tool baselines in {where} yet (the proxy records them on its first tools/list).\n"
    rows = [("TOOL", "BASELINE", "STATE", "BASELINED")]
    rows += [(t.name, t.baseline.fingerprint[:SHORT_SHA], _state(t), _accepted(t)) for t in tools]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    ]
    drifted = sum(1 for t in tools if t.pending is not None)
    lines.append(f"{len(tools)} tools in {where}, {drifted} drifted")
    return "\n".join(lines) + "\n"


def list_tools(store: Store, upstream: str) -> list[StoredTool]:
    return store.read_sync(load_tools(upstream))


def accept_tool(store: Store, upstream: str, name: str, accepted_by: str) -> str:
    """Accept ``name``'s pending definition; the confirmation line. Raises ``BaselineError``."""
    accepted = store.submit(accept_pending(upstream, name, accepted_by, datetime.now(UTC))).result()
    return (
        f"Accepted {name}: its baseline is now {accepted.baseline.fingerprint[:SHORT_SHA]} "
        f"(accepted by {accepted_by}). A running proxy applies it within {BASELINE_POLL_SECONDS:g}s."
    )
