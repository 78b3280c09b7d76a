"""The tables of the governance store, as SQLModel classes.

The schema itself is created by :mod:`helio_proxy.store.migrations`; these classes map it, and a
test checks that they match what the migrations build on every backend. Times are stored as
fixed-width RFC 3339 UTC text (``2026-01-02T03:04:05.123456Z``), so they sort and compare as text
on SQLite and PostgreSQL alike; JSON values are stored as text, exactly as they were hashed.

No ``from __future__ import annotations`` here: SQLModel reads the annotations at class creation.
"""

from typing import Final

from sqlalchemy import BigInteger, Boolean, Column, Table, Text
from sqlmodel import Field, SQLModel


def _text(*, nullable: bool = True, primary_key: bool = False) -> Column[str]:
    return Column(Text, nullable=nullable, primary_key=primary_key)


class AuditRecordRow(SQLModel, table=True):
    """One audit record (every kind). Append-only; retention is the only deletion path."""

    __tablename__ = "audit_records"  # pyright: ignore[reportAssignmentType]

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    id: str = Field(sa_column=_text(nullable=False))
    timestamp: str = Field(sa_column=_text(nullable=False))
    session_id: str | None = Field(default=None, sa_column=_text())
    agent_id: str | None = Field(default=None, sa_column=_text())
    tool_name: str | None = Field(default=None, sa_column=_text())
    tool_input: str | None = Field(default=None, sa_column=_text())
    policy_decision: str | None = Field(default=None, sa_column=_text())
    block_reason: str | None = Field(default=None, sa_column=_text())
    matched_rule: str | None = Field(default=None, sa_column=_text())
    evidence_chain: str | None = Field(default=None, sa_column=_text())
    approval_status: str | None = Field(default=None, sa_column=_text())
    approved_by: str | None = Field(default=None, sa_column=_text())
    upstream_response: str | None = Field(default=None, sa_column=_text())
    upstream_error: str | None = Field(default=None, sa_column=_text())
    upstream_http_status: int | None = None
    upstream_latency_ms: float | None = None
    total_duration_ms: float | None = None
    approval_wait_ms: float | None = None
    proxy_compute_ms: float | None = None
    flagged_destructive: bool = False
    dry_run: bool = False
    created_at: str = Field(sa_column=_text(nullable=False))
    environment: str | None = Field(default=None, sa_column=_text())
    matched_rule_index: int | None = None
    record_kind: str = Field(sa_column=_text(nullable=False))
    origin: str = Field(sa_column=_text(nullable=False))
    metadata_: str | None = Field(default=None, sa_column=Column("metadata", Text, nullable=True))
    session_source: str | None = Field(default=None, sa_column=_text())
    protocol_version: str | None = Field(default=None, sa_column=_text())
    config_sha256: str | None = Field(default=None, sa_column=_text())
    success: bool | None = None
    prev_hash: str | None = Field(default=None, sa_column=_text())
    hash: str | None = Field(default=None, sa_column=_text())
    signature: str | None = Field(default=None, sa_column=_text())


class AuditChainState(SQLModel, table=True):
    """The head of the audit hash chain (a single row, ``id = 1``), advanced with every batch.

    ``anchor_seq``/``anchor_hash`` name the last record removed by retention, where a verifier
    starts; both are ``0``/all zeros until the first sweep deletes anything.
    """

    __tablename__ = "audit_chain"  # pyright: ignore[reportAssignmentType]

    id: int = Field(primary_key=True)
    seq: int = Field(sa_type=BigInteger)
    head_hash: str = Field(sa_column=_text(nullable=False))
    anchor_seq: int = Field(sa_type=BigInteger)
    anchor_hash: str = Field(sa_column=_text(nullable=False))


class ApprovalTicketRow(SQLModel, table=True):
    """A held call waiting for (or resolved by) operators; bound to the exact call it approves."""

    __tablename__ = "approval_tickets"  # pyright: ignore[reportAssignmentType]

    id: str = Field(sa_column=_text(nullable=False, primary_key=True))
    status: str = Field(sa_column=_text(nullable=False))
    created_at: str = Field(sa_column=_text(nullable=False))
    expires_at: str = Field(sa_column=_text(nullable=False))
    resolved_at: str | None = Field(default=None, sa_column=_text())
    session_id: str | None = Field(default=None, sa_column=_text())
    agent_id: str | None = Field(default=None, sa_column=_text())
    tool_name: str = Field(sa_column=_text(nullable=False))
    arguments_digest: str = Field(sa_column=_text(nullable=False))
    config_sha256: str | None = Field(default=None, sa_column=_text())
    request: str = Field(sa_column=_text(nullable=False))
    decisions: str = Field(sa_column=_text(nullable=False))
    resolution_reason: str | None = Field(default=None, sa_column=_text())
    kind: str | None = Field(default=None, sa_column=_text())
    resolved_by: str | None = Field(default=None, sa_column=_text())
    escalated_at: str | None = Field(default=None, sa_column=_text())
    escalated_to: str | None = Field(default=None, sa_column=_text())
    deliveries: str | None = Field(default=None, sa_column=_text())
    notification_failures: str | None = Field(default=None, sa_column=_text())
    holder: str | None = Field(default=None, sa_column=_text())
    holder_seen_at: str | None = Field(default=None, sa_column=_text())
    consumed_at: str | None = Field(default=None, sa_column=_text())
    upstream: str | None = Field(default=None, sa_column=_text())


class BudgetMetaRow(SQLModel, table=True):
    """One configured budget: its epoch (bumped when limit, currency, window or key change)."""

    __tablename__ = "budget_meta"  # pyright: ignore[reportAssignmentType]

    name: str = Field(sa_column=_text(nullable=False, primary_key=True))
    epoch: int
    fingerprint: str = Field(sa_column=_text(nullable=False))
    updated_at: str = Field(sa_column=_text(nullable=False))
    retired_at: str | None = Field(default=None, sa_column=_text())


class BudgetEventRow(SQLModel, table=True):
    """One charge against a budget bucket (the durable ledger). Amounts are decimal text."""

    __tablename__ = "budget_events"  # pyright: ignore[reportAssignmentType]

    id: str = Field(sa_column=_text(nullable=False, primary_key=True))
    budget_name: str = Field(sa_column=_text(nullable=False))
    epoch: int
    bucket_key: str = Field(sa_column=_text(nullable=False))
    amount: str = Field(sa_column=_text(nullable=False))
    currency: str = Field(sa_column=_text(nullable=False))
    occurred_at: str = Field(sa_column=_text(nullable=False))
    audit_id: str | None = Field(default=None, sa_column=_text())
    tool_name: str | None = Field(default=None, sa_column=_text())
    session_id: str | None = Field(default=None, sa_column=_text())


class LimitEventRow(SQLModel, table=True):
    """One slot taken in a rate or spend limit window (``amount`` is decimal text; 1 for a rate slot)."""

    __tablename__ = "limit_events"  # pyright: ignore[reportAssignmentType]

    id: str = Field(sa_column=_text(nullable=False, primary_key=True))
    bucket_key: str = Field(sa_column=_text(nullable=False))
    amount: str = Field(sa_column=_text(nullable=False))
    occurred_at: str = Field(sa_column=_text(nullable=False))
    audit_id: str | None = Field(default=None, sa_column=_text())


class LimitBucketRow(SQLModel, table=True):
    """One rate, spend or budget bucket: the row a charge locks, and when its pot started.

    ``version`` is the limit's fingerprint (rate/spend) or the budget's epoch; ``started_at`` is
    when a ``window: session`` pot began (reset after ``idle_ttl`` without activity).
    """

    __tablename__ = "limit_buckets"  # pyright: ignore[reportAssignmentType]

    bucket_key: str = Field(sa_column=_text(nullable=False, primary_key=True))
    kind: str = Field(sa_column=_text(nullable=False))
    owner: str = Field(sa_column=_text(nullable=False))
    version: str = Field(sa_column=_text(nullable=False))
    scope: str = Field(sa_column=_text(nullable=False))
    subject: str | None = Field(default=None, sa_column=_text())
    started_at: str = Field(sa_column=_text(nullable=False))
    last_activity: str = Field(sa_column=_text(nullable=False))
    charge_total: str | None = Field(default=None, sa_column=_text())
    charge_count: int | None = Field(default=None, sa_column=Column(BigInteger))
    counted_from: str | None = Field(default=None, sa_column=_text())
    oldest_at: str | None = Field(default=None, sa_column=_text())
    newest_at: str | None = Field(default=None, sa_column=_text())


class SessionEvidenceRow(SQLModel, table=True):
    """Evidence held for a session: marked by the SDK or recorded by the proxy from a call it saw."""

    __tablename__ = "session_evidence"  # pyright: ignore[reportAssignmentType]

    session_id: str = Field(sa_column=_text(nullable=False, primary_key=True))
    tool_name: str = Field(sa_column=_text(nullable=False, primary_key=True))
    evidence_key: str = Field(sa_column=_text(nullable=False, primary_key=True))
    evidence_data: str | None = Field(default=None, sa_column=_text())
    source: str = Field(sa_column=_text(nullable=False))
    created_at: str = Field(sa_column=_text(nullable=False))
    expires_at: str | None = Field(default=None, sa_column=_text())
    audit_id: str | None = Field(default=None, sa_column=_text())


class SessionCallRow(SQLModel, table=True):
    """A completed call in a session (what dependency checks look at)."""

    __tablename__ = "session_calls"  # pyright: ignore[reportAssignmentType]

    audit_id: str = Field(sa_column=_text(nullable=False, primary_key=True))
    session_id: str = Field(sa_column=_text(nullable=False))
    tool_name: str = Field(sa_column=_text(nullable=False))
    succeeded: bool
    completed_at: str = Field(sa_column=_text(nullable=False))


class SessionDependencyRow(SQLModel, table=True):
    """Prerequisites an agent declared through the SDK for a tool in a session."""

    __tablename__ = "session_dependencies"  # pyright: ignore[reportAssignmentType]

    session_id: str = Field(sa_column=_text(nullable=False, primary_key=True))
    tool_name: str = Field(sa_column=_text(nullable=False, primary_key=True))
    requires: str = Field(sa_column=_text(nullable=False))
    declared_at: str = Field(sa_column=_text(nullable=False))


class SessionStateRow(SQLModel, table=True):
    """One session's governance state as a JSON document (see :mod:`helio_proxy.evidence.sql`)."""

    __tablename__ = "session_state"  # pyright: ignore[reportAssignmentType]

    session_id: str = Field(sa_column=_text(nullable=False, primary_key=True))
    state: str = Field(sa_column=_text(nullable=False))
    bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_write_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    live_until_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    next_expiry_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class SessionHistoryRow(SQLModel, table=True):
    """One completed call of a store-backed session (its history: see :mod:`helio_proxy.evidence.sql`)."""

    __tablename__ = "session_history"  # pyright: ignore[reportAssignmentType]

    session_id: str = Field(sa_column=_text(nullable=False, primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False, primary_key=True))
    call_id: str = Field(sa_column=_text(nullable=False))
    tool_name: str = Field(sa_column=_text(nullable=False))
    at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    succeeded: bool
    arguments: str | None = Field(default=None, sa_column=_text())


class ToolBaselineRow(SQLModel, table=True):
    """The accepted definition of a tool per upstream, against which drift is detected.

    ``upstream`` is the upstream's ``name`` (``""`` for the single ``upstream:`` form). The
    ``pending_*`` columns hold the definition the tool drifted to (``pending_aspects`` a JSON
    list), NULL while it matches its baseline; accepting makes it the baseline.
    """

    __tablename__ = "tool_baselines"  # pyright: ignore[reportAssignmentType]

    upstream: str = Field(sa_column=_text(nullable=False, primary_key=True))
    tool_name: str = Field(sa_column=_text(nullable=False, primary_key=True))
    definition_sha256: str = Field(sa_column=_text(nullable=False))
    definition: str = Field(sa_column=_text(nullable=False))
    first_seen_at: str = Field(sa_column=_text(nullable=False))
    accepted_at: str | None = Field(default=None, sa_column=_text())
    accepted_by: str | None = Field(default=None, sa_column=_text())
    pending_definition: str | None = Field(default=None, sa_column=_text())
    pending_sha256: str | None = Field(default=None, sa_column=_text())
    pending_aspects: str | None = Field(default=None, sa_column=_text())
    pending_since: str | None = Field(default=None, sa_column=_text())


class KillSwitchRow(SQLModel, table=True):
    """One kill-switch scope (``global``, ``upstream:NAME``, ``agent:ID``) and whether it is engaged."""

    __tablename__ = "kill_switch"  # pyright: ignore[reportAssignmentType]

    scope: str = Field(sa_column=_text(nullable=False, primary_key=True))
    engaged: bool = Field(sa_column=Column(Boolean, nullable=False))
    reason: str | None = Field(default=None, sa_column=_text())
    actor: str | None = Field(default=None, sa_column=_text())
    source: str | None = Field(default=None, sa_column=_text())
    changed_at: str = Field(sa_column=_text(nullable=False))


class StoreChangeRow(SQLModel, table=True):
    """One change on the change bus (see :mod:`helio_proxy.store.changes`); pruned after an hour."""

    __tablename__ = "store_changes"  # pyright: ignore[reportAssignmentType]

    id: int = Field(sa_column=Column(BigInteger, primary_key=True))
    channel: str = Field(sa_column=_text(nullable=False))
    payload: str | None = Field(default=None, sa_column=_text())
    created_at: str = Field(sa_column=_text(nullable=False))


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


AUDIT_RECORDS: Final = _table("audit_records")
AUDIT_CHAIN: Final = _table("audit_chain")
APPROVAL_TICKETS: Final = _table("approval_tickets")
BUDGET_META: Final = _table("budget_meta")
BUDGET_EVENTS: Final = _table("budget_events")
LIMIT_EVENTS: Final = _table("limit_events")
LIMIT_BUCKETS: Final = _table("limit_buckets")
SESSION_EVIDENCE: Final = _table("session_evidence")
SESSION_CALLS: Final = _table("session_calls")
SESSION_DEPENDENCIES: Final = _table("session_dependencies")
SESSION_STATE: Final = _table("session_state")
SESSION_HISTORY: Final = _table("session_history")
TOOL_BASELINES: Final = _table("tool_baselines")
KILL_SWITCH: Final = _table("kill_switch")
STORE_CHANGES: Final = _table("store_changes")

GOVERNANCE_TABLES: Final = (
    AUDIT_RECORDS,
    AUDIT_CHAIN,
    APPROVAL_TICKETS,
    BUDGET_META,
    BUDGET_EVENTS,
    LIMIT_EVENTS,
    LIMIT_BUCKETS,
    SESSION_EVIDENCE,
    SESSION_CALLS,
    SESSION_DEPENDENCIES,
    SESSION_STATE,
    SESSION_HISTORY,
    TOOL_BASELINES,
    KILL_SWITCH,
    STORE_CHANGES,
)
"""Every table the migrations create, besides ``schema_migrations``."""

SEARCH_ONLY_COLUMNS: Final = {"postgresql": {"audit_records": frozenset({"tool_input_words"})}}
"""Columns a backend has for its search indexes only (generated, never written or read by the
models): PostgreSQL's stored ``tsvector`` of the arguments (migration ``0009``)."""
