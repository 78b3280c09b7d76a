"""Audit records: one frozen model per kind of event the proxy records.

Every kind shares the identity and context fields of :class:`AuditRecord`; the fields of a kind
that have no column of their own (a reload's hashes, a kill switch's actor...) are stored in the
record's ``metadata`` object. Records hold what happened, unredacted: secrets are scrubbed when
the record is turned into a row (:mod:`helio_proxy.audit.rows`), before anything is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, Literal, Self, cast

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticUndefined

from helio_proxy.ids import new_uuid

RecordKind = Literal["tool_call", "drift_event", "policy_reload", "approval_resolution", "kill_switch"]

POLICY_DECISIONS: Final = frozenset(
    {
        "allow",
        "deny",
        "require_approval",
        "rate_limit",
        "spend_limit",
        "dry_run",
        "rejected",
        "tool_drift",
        "tool_drift_reverted",
        "tool_drift_accepted",
    }
)
"""Values of ``policy_decision``: the reference's set, plus ``tool_drift_accepted``."""

BLOCK_REASONS: Final = frozenset(
    {
        "policy_denied",
        "session_unresolved",
        "evidence_missing",
        "evidence_expired",
        "dependency_missing",
        "approval_denied",
        "approval_timeout",
        "approval_capacity_exhausted",
        "client_disconnected",
        "shutdown_cancelled",
        "cancelled",
        "rate_limited",
        "spend_limited",
        "budget_exceeded",
        "budget_ledger_write_failed",
        "tool_definition_drift",
        "install_denied",
        "missing_tool_name",
        "header_mismatch",
        "invalid_arguments",
        "kill_switch",
        "audit_unavailable",
    }
)
"""Known ``block_reason`` values: the reference's eighteen, plus ``invalid_arguments`` and ``kill_switch``.
Not enforced on records, so a reason added by a later part is never lost."""

SessionSource = Literal["header", "meta", "legacy_header", "transport", "sideband"]

NAMELESS_TOOL: Final = "<nameless>"
"""``tool_name`` of a ``tools/call`` without a usable ``params.name`` (rejected, never forwarded)."""


class AuditRecord(BaseModel):
    """What every record carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def trusted(cls, values: dict[str, Any]) -> Self:
        """The record of ``values``, built without validating them, defaults filled in: for values
        the proxy's own (statically typed) code assembled, such as each ``tools/call``'s record,
        where validation cost about 9 µs of the event loop per call (docs/performance.md, the
        thirteenth look). It equals ``cls(**values)`` for such values: the test suite builds every
        such record both ways and compares them. ``values`` becomes the record's own."""
        defaults = _DEFAULTS.get(cls)
        if defaults is None:
            defaults = _DEFAULTS[cls] = _defaults_of(cls)
        constants, factories = defaults
        fields = constants.copy()
        fields.update(values)
        for name, factory in factories:
            if name not in values:
                fields[name] = factory()
        record = cls.__new__(cls)
        # What BaseModel.model_construct sets, without its loop over every field in Python.
        object.__setattr__(record, "__dict__", fields)
        object.__setattr__(record, "__pydantic_fields_set__", set(values))
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record

    id: uuid.UUID = Field(default_factory=new_uuid)
    timestamp: datetime
    """When the event started (a call: when it arrived)."""
    session_id: str | None = None
    agent_id: str | None = None
    session_source: SessionSource | None = None
    environment: str | None = None
    origin: str = "mcp"
    """``mcp`` for the agent port; an adapter's slug for the sideband."""
    protocol_version: str | None = None
    """The client's MCP protocol version claim, verbatim."""
    config_sha256: str | None = None
    """Digest of the config file in force."""
    metadata: dict[str, Any] | None = None


_DEFAULTS: dict[type[AuditRecord], tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...]]] = {}
"""Per record class: its fields' default values, and the fields whose default comes from a factory."""


def _defaults_of(cls: type[AuditRecord]) -> tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...]]:
    constants: dict[str, Any] = {}
    factories: list[tuple[str, Callable[[], Any]]] = []
    for name, info in cls.model_fields.items():
        if info.default_factory is not None:
            factories.append((name, cast("Callable[[], Any]", info.default_factory)))
        elif info.default is not PydanticUndefined:
            constants[name] = info.default
    return constants, tuple(factories)


class ToolCallRecord(AuditRecord):
    """One ``tools/call``: allowed, blocked, rejected or failed upstream."""

    record_kind: Literal["tool_call"] = "tool_call"
    tool_name: str
    tool_input: dict[str, Any] = Field(default_factory=dict[str, Any])
    policy_decision: str = "allow"
    block_reason: str | None = None
    matched_rule: str | None = None
    matched_rule_index: int | None = None
    evidence_chain: dict[str, Any] | None = None
    approval_status: str | None = None
    approved_by: str | None = None
    upstream_response: dict[str, Any] | None = None
    """The upstream's JSON-RPC response (a summary is stored instead when ``include_responses`` is off)."""
    upstream_error: dict[str, Any] | None = None
    """``{failure_class, message, ...}`` when the upstream failed to answer properly."""
    upstream_http_status: int | None = None
    upstream_latency_ms: float | None = None
    total_duration_ms: float | None = None
    approval_wait_ms: float | None = None
    proxy_compute_ms: float | None = None
    flagged_destructive: bool = False
    dry_run: bool = False
    success: bool | None = None
    """See :func:`call_succeeded`; ``None`` when the call was not forwarded."""


class DriftEventRecord(AuditRecord):
    """A tool's definition changed upstream, changed back, or an operator accepted the change."""

    record_kind: Literal["drift_event"] = "drift_event"
    tool_name: str
    policy_decision: Literal["tool_drift", "tool_drift_reverted", "tool_drift_accepted"] = "tool_drift"
    upstream: str | None = None
    baseline_sha256: str | None = None
    """The baseline in force after the event (after an acceptance: the accepted definition)."""
    current_sha256: str | None = None
    """The definition the upstream lists."""
    drifted_aspects: list[str] = Field(default_factory=list[str])
    accepted_by: str | None = None


class PolicyReloadRecord(AuditRecord):
    """A config reload was applied or rejected."""

    record_kind: Literal["policy_reload"] = "policy_reload"
    outcome: Literal["applied", "rejected", "rejected_pinned", "watch_failed"]
    before_sha256: str | None = None
    after_sha256: str | None = None
    rule_count: int | None = None
    budget_count: int | None = None
    removed_rules: list[str] = Field(default_factory=list[str])
    error: str | None = None


class ApprovalResolutionRecord(AuditRecord):
    """An approval ticket was approved, denied, timed out or cancelled."""

    record_kind: Literal["approval_resolution"] = "approval_resolution"
    ticket_id: str
    tool_name: str
    approval_status: Literal["approved", "denied", "timeout", "cancelled"]
    approved_by: str | None = None
    reason: str | None = None


class KillSwitchRecord(AuditRecord):
    """The kill switch was engaged or released."""

    record_kind: Literal["kill_switch"] = "kill_switch"
    engaged: bool
    actor: str | None = None
    source: Literal["cli", "api", "env"] | None = None


AnyRecord = (
    ToolCallRecord | DriftEventRecord | PolicyReloadRecord | ApprovalResolutionRecord | KillSwitchRecord
)


def call_succeeded(payload: dict[str, Any] | None) -> bool:
    """The success rule: a JSON-RPC result (no ``error``) whose ``result.isError`` is not ``true``.

    ``payload`` is the upstream's JSON-RPC response; ``None`` (no usable answer) is a failure.
    """
    if payload is None or "error" in payload:
        return False
    result = payload.get("result")
    return not (isinstance(result, dict) and result.get("isError") is True)  # pyright: ignore[reportUnknownMemberType]


def response_summary(payload: dict[str, Any] | None) -> dict[str, Any]:
    """What ``include_responses: false`` stores: ``{success, has_error, error_code, content_types, content_count}``."""
    error = payload.get("error") if payload is not None else None
    result = payload.get("result") if payload is not None else None
    content: list[Any] = []
    if isinstance(result, dict):
        raw_content: Any = cast(dict[str, Any], result).get("content")
        if isinstance(raw_content, list):
            content = cast(list[Any], raw_content)
    types = sorted(
        {
            str(cast(dict[str, Any], item)["type"])
            for item in content
            if isinstance(item, dict) and "type" in item
        }
    )
    return {
        "success": call_succeeded(payload),
        "has_error": isinstance(error, dict),
        "error_code": error.get("code") if isinstance(error, dict) else None,  # pyright: ignore[reportUnknownMemberType]
        "content_types": types,
        "content_count": len(content),
    }
