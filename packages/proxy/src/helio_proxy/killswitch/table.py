"""The ``kill_switch`` table: read every engaged scope; engage or release one, audited and published.

:func:`switch_job` is the one write path (``helio kill``/``helio resume`` and ``POST
/api/kill-switch`` both use it): in one transaction it sets the scope's row, appends the
``kill_switch`` audit record (hash-chained like every record) and publishes the change on the
change bus, so the state, its audit record and the other proxies' wake-up cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from helio_proxy.audit.chain import append_rows
from helio_proxy.audit.records import KillSwitchRecord
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.killswitch.model import Engagement
from helio_proxy.store import changes
from helio_proxy.store.base import parse_time_text
from helio_proxy.store.tables import KILL_SWITCH

Source = Literal["cli", "api", "env"]


@dataclass(frozen=True, slots=True)
class Switch:
    """One change of a scope: engage (``engaged=True``) or release it."""

    scope: str
    engaged: bool
    actor: str
    reason: str | None
    source: Source
    at: str
    """When (stored time text)."""
    environment: str | None = None
    config_sha256: str | None = None


def load_engaged(conn: Connection) -> dict[str, Engagement]:
    """Every engaged scope."""
    rows = conn.execute(select(KILL_SWITCH).where(KILL_SWITCH.c.engaged.is_(True)))
    return {
        row.scope: Engagement(row.scope, row.reason, row.actor, row.changed_at, row.source) for row in rows
    }


def switch_job(
    change: Switch,
    rows: RowBuilder,
    *,
    chained: bool = True,
    signer: Ed25519PrivateKey | None = None,
) -> Callable[[Connection], bool]:
    """A write job applying ``change``; returns whether the scope's state changed (a repeated
    ``kill`` or a ``resume`` of a released scope changes nothing and records nothing)."""

    def run(conn: Connection) -> bool:
        current = conn.execute(
            select(KILL_SWITCH.c.engaged).where(KILL_SWITCH.c.scope == change.scope).with_for_update()
        ).scalar_one_or_none()
        if bool(current) == change.engaged:
            return False
        values = {
            "scope": change.scope,
            "engaged": change.engaged,
            "reason": change.reason,
            "actor": change.actor,
            "source": change.source,
            "changed_at": change.at,
        }
        if current is None:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(dialect.insert(KILL_SWITCH).values(**values).on_conflict_do_nothing())
        else:
            conn.execute(update(KILL_SWITCH).where(KILL_SWITCH.c.scope == change.scope).values(**values))
        record = KillSwitchRecord(
            timestamp=parse_time_text(change.at),
            engaged=change.engaged,
            actor=change.actor,
            source=change.source,
            environment=change.environment,
            config_sha256=change.config_sha256,
            metadata={"scope": change.scope, "reason": change.reason},
        )
        append_rows(conn, [rows.build(record, change.at)], chained=chained, signer=signer)
        changes.publish(conn, changes.KILL_SWITCH, {"scope": change.scope, "engaged": change.engaged})
        return True

    return run
