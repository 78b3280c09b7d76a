"""The ``tool_baselines`` table: a row per (upstream, tool) as values, and the jobs on it.

A row holds the baseline (``definition``, its ``definition_sha256``), when it was first seen and
who accepted it when, and the definition the tool drifted to (``pending_*``; NULL while it
matches). Definitions are stored as canonical JSON, the text their fingerprint is taken of.

``upstream`` is the upstream's ``name``, or ``""`` for the single ``upstream:`` form: renaming
an upstream starts its baselines afresh, and pointing an unnamed ``upstream`` at another server
compares that server against the old baselines (drift, which fails closed).

The proxy's writes keep what is already stored when they race: a first-seen baseline never
replaces a row, and a drift update only applies to the baseline it was measured against.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, case, select, text, update

from helio_proxy.errors import HelioProxyError
from helio_proxy.policy.baselines import PendingDrift, ToolBaseline
from helio_proxy.policy.drift import canonical_json
from helio_proxy.store import changes
from helio_proxy.store.base import Job, time_text
from helio_proxy.store.tables import TOOL_BASELINES

_C = TOOL_BASELINES.c
_PENDING_COLUMNS = ("pending_definition", "pending_sha256", "pending_aspects", "pending_since")


def baseline_key(upstream_name: str | None) -> str:
    """The ``upstream`` column value for an upstream (``""`` when it has no name)."""
    return upstream_name or ""


class BaselineError(HelioProxyError):
    """An operator asked for something the stored baselines cannot give (unknown tool, no drift)."""


@dataclass(frozen=True, slots=True)
class StoredTool:
    """One ``tool_baselines`` row."""

    upstream: str
    baseline: ToolBaseline
    first_seen_at: str
    accepted_at: str | None = None
    pending: PendingDrift | None = None
    pending_since: str | None = None

    @property
    def name(self) -> str:
        return self.baseline.name


def _definition(value: str) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(value))


def _stored(row: Mapping[Any, Any]) -> StoredTool:
    definition = _definition(row["definition"])
    baseline = ToolBaseline(row["tool_name"], definition, row["definition_sha256"], row["accepted_by"])
    pending: PendingDrift | None = None
    if row["pending_definition"] is not None and row["pending_sha256"] is not None:
        current = ToolBaseline(
            row["tool_name"], _definition(row["pending_definition"]), row["pending_sha256"]
        )
        aspects = tuple(str(a) for a in json.loads(row["pending_aspects"] or "[]"))
        pending = PendingDrift(current, aspects)
    return StoredTool(
        row["upstream"],
        baseline,
        row["first_seen_at"],
        row["accepted_at"],
        pending,
        row["pending_since"] if pending is not None else None,
    )


def load_tools(upstream: str, names: Collection[str] | None = None) -> Job[list[StoredTool]]:
    """Every row of ``upstream`` (only ``names`` when given), by tool name."""

    def job(conn: Connection) -> list[StoredTool]:
        query = select(TOOL_BASELINES).where(_C.upstream == upstream).order_by(_C.tool_name)
        if names is not None:
            query = query.where(_C.tool_name.in_(sorted(names)))
        return [_stored(row._mapping) for row in conn.execute(query)]  # pyright: ignore[reportPrivateUsage]

    return job


def load_fingerprints(upstream: str) -> Job[dict[str, str]]:
    """``{tool_name: definition_sha256}`` of ``upstream``: the cheap query a poll runs."""

    def job(conn: Connection) -> dict[str, str]:
        query = select(_C.tool_name, _C.definition_sha256).where(_C.upstream == upstream)
        return {str(name): str(sha) for name, sha in conn.execute(query)}

    return job


_INSERT_FIRST_SEEN = text(
    "INSERT INTO tool_baselines (upstream, tool_name, definition_sha256, definition, first_seen_at) "
    "VALUES (:upstream, :tool_name, :sha, :definition, :at) "
    "ON CONFLICT (upstream, tool_name) DO NOTHING"
)

_UPSERT_ACCEPTED = text(
    "INSERT INTO tool_baselines (upstream, tool_name, definition_sha256, definition, first_seen_at, "
    "accepted_at, accepted_by) VALUES (:upstream, :tool_name, :sha, :definition, :at, :at, :by) "
    "ON CONFLICT (upstream, tool_name) DO UPDATE SET definition_sha256 = excluded.definition_sha256, "
    "definition = excluded.definition, accepted_at = excluded.accepted_at, "
    "accepted_by = excluded.accepted_by, pending_definition = NULL, pending_sha256 = NULL, "
    "pending_aspects = NULL, pending_since = NULL"
)


def insert_first_seen(upstream: str, baseline: ToolBaseline, at: datetime) -> Job[None]:
    """Baseline a tool seen for the first time, unless a row for it exists already."""
    values = {
        "upstream": upstream,
        "tool_name": baseline.name,
        "sha": baseline.fingerprint,
        "definition": canonical_json(baseline.definition).decode(),
        "at": time_text(at),
    }

    def job(conn: Connection) -> None:
        conn.execute(_INSERT_FIRST_SEEN, values)

    return job


def write_accepted(upstream: str, baseline: ToolBaseline, at: datetime) -> Job[None]:
    """Make ``baseline`` the tool's baseline (accepted at ``at`` by ``baseline.accepted_by``)."""
    values = {
        "upstream": upstream,
        "tool_name": baseline.name,
        "sha": baseline.fingerprint,
        "definition": canonical_json(baseline.definition).decode(),
        "at": time_text(at),
        "by": baseline.accepted_by,
    }

    def job(conn: Connection) -> None:
        conn.execute(_UPSERT_ACCEPTED, values)
        changes.publish(conn, changes.BASELINE_ACCEPTED, {"upstream": upstream, "tool": baseline.name})

    return job


def write_pending(
    upstream: str, name: str, baseline_sha256: str, drift: PendingDrift | None, at: datetime
) -> Job[None]:
    """Record the tool's drift from the baseline ``baseline_sha256`` (``None`` clears it).

    Applies only while that baseline is the stored one: an acceptance that got there first wins.
    ``pending_since`` is kept while the pending definition stays the same.
    """
    key = (_C.upstream == upstream) & (_C.tool_name == name) & (_C.definition_sha256 == baseline_sha256)
    if drift is None:
        values: dict[str, Any] = dict.fromkeys(_PENDING_COLUMNS)
    else:
        sha = drift.current.fingerprint
        values = {
            "pending_definition": canonical_json(drift.current.definition).decode(),
            "pending_sha256": sha,
            "pending_aspects": json.dumps(list(drift.aspects)),
            # SET sees the row as it was: the time stays while the pending definition does.
            "pending_since": case((_C.pending_sha256 == sha, _C.pending_since), else_=time_text(at)),
        }
    statement = update(TOOL_BASELINES).where(key).values(values)

    def job(conn: Connection) -> None:
        conn.execute(statement)

    return job


def accept_pending(upstream: str, name: str, accepted_by: str | None, at: datetime) -> Job[StoredTool]:
    """The operator's acceptance: the tool's pending definition becomes its baseline.

    Raises :class:`BaselineError` when the tool has no row, no pending definition, or one that
    only differs by being listed twice (that drift ends when the upstream lists it once).
    """

    def job(conn: Connection) -> StoredTool:
        found = load_tools(upstream, [name])(conn)
        if not found:
            known = sorted(load_fingerprints(upstream)(conn))
            listed = ", ".join(known) if known else "none"
            raise BaselineError(f"no baseline for tool {name!r} (baselined tools: {listed})")
        row = found[0]
        pending = row.pending
        if pending is None:
            raise BaselineError(f"tool {name!r} has not drifted from its baseline: nothing to accept")
        if pending.current.fingerprint == row.baseline.fingerprint:
            raise BaselineError(
                f"tool {name!r} is unchanged but listed more than once by the upstream: "
                "that drift ends when the upstream lists it once"
            )
        stamp = time_text(at)
        changed = conn.execute(
            update(TOOL_BASELINES)
            .where(
                (_C.upstream == upstream)
                & (_C.tool_name == name)
                & (_C.pending_sha256 == pending.current.fingerprint)
            )
            .values(
                definition=canonical_json(pending.current.definition).decode(),
                definition_sha256=pending.current.fingerprint,
                accepted_at=stamp,
                accepted_by=accepted_by,
                **dict.fromkeys(_PENDING_COLUMNS),
            )
        )
        if changed.rowcount != 1:
            raise BaselineError(f"tool {name!r} changed while it was being accepted; look again and retry")
        baseline = ToolBaseline(name, pending.current.definition, pending.current.fingerprint, accepted_by)
        # Every proxy on the store takes the acceptance up on the change bus (the poll heals).
        changes.publish(conn, changes.BASELINE_ACCEPTED, {"upstream": upstream, "tool": name})
        return StoredTool(upstream, baseline, row.first_seen_at, stamp)

    return job
