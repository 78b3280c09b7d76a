"""Pydantic models of the operator API's requests and answers (they make ``/api/openapi.json``).

Records and tickets carry many fields; their models name the ones the console relies on and
allow the rest (``extra="allow"``), so a field added to the audit record later is not an API
break.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

Role = Literal["viewer", "approver", "admin"]


class ErrorBody(BaseModel):
    """Every error of every REST surface (operator API and sideband)."""

    error: str = Field(description="What went wrong, for a person.")
    code: str = Field(description="Stable snake_case code, for a program.")
    details: dict[str, Any] | None = Field(default=None, description="Structured detail, when there is any.")


class Data(BaseModel, Generic[T]):
    """One object."""

    data: T


class OffsetPage(BaseModel, Generic[T]):
    """A page of a list paged by offset."""

    data: list[T]
    total: int
    limit: int
    offset: int


class KeysetPage(BaseModel, Generic[T]):
    """A page of a list paged by cursor, newest first; ``next_cursor`` is null on the last page."""

    data: list[T]
    limit: int
    next_cursor: str | None


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    uptime: float


class Secret(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str = Field(min_length=1)


class LoginToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1)


class Login(BaseModel):
    operator: str
    role: Role
    csrf_token: str
    expires_in: int


class WhoAmI(BaseModel):
    operator: str
    role: Role
    via: Literal["api_secret", "operator", "open"]
    csrf_token: str | None = None


class LoggedOut(BaseModel):
    logged_out: bool


class ChainStatus(BaseModel):
    status: Literal["ok", "altered", "broken_link", "unchained"]
    hash_matches: bool
    prev_matches: bool | None
    detail: str


class AuditRecord(Open):
    id: str
    seq: int
    timestamp: str
    record_kind: str
    origin: str
    session_id: str | None
    agent_id: str | None
    tool_name: str | None
    upstream: str | None
    policy_decision: str | None
    block_reason: str | None
    matched_rule: str | None
    tool_input: Any
    hash: str | None
    prev_hash: str | None


class AuditRecordDetail(AuditRecord):
    chain: ChainStatus


class Count(BaseModel):
    total: int


class ToolCount(BaseModel):
    tool: str
    count: int
    blocked: int


class ApprovalStats(BaseModel):
    requested: int
    approved: int
    denied: int
    timed_out: int
    approval_rate: float | None
    wait_ms_p50: float | None
    wait_ms_p95: float | None


class HourBucket(BaseModel):
    hour: str
    total: int
    allowed: int
    blocked: int


class Percentiles(BaseModel):
    samples: int
    p50: float | None
    p95: float | None
    p99: float | None


class Analytics(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    total: int
    by_decision: dict[str, int]
    by_block_reason: dict[str, int]
    top_tools: list[ToolCount]
    approvals: ApprovalStats
    series: list[HourBucket]
    overhead_ms: Percentiles


class EvidenceItem(BaseModel):
    evidence_key: str
    tool_name: str
    data: Any
    timestamp: float
    expires_at: float | None
    verified: bool
    call_id: str | None


class CompletedCall(BaseModel):
    tool_name: str
    timestamp: float
    succeeded: bool
    call_id: str | None


class Dependency(BaseModel):
    tool_name: str
    requires: list[str]


class SessionView(BaseModel):
    session_id: str
    evidence: list[EvidenceItem]
    expired_evidence: dict[str, str]
    context: dict[str, Any]
    dependencies: list[Dependency]
    completed_tools: list[CompletedCall]
    calls: list[AuditRecord]
    calls_truncated: bool


class Drift(BaseModel):
    since: str | None
    aspects: list[str]
    fingerprint: str
    definition: dict[str, Any]


class ToolView(BaseModel):
    upstream: str = Field(description='The upstream\'s name ("" for the single `upstream:` form).')
    name: str
    fingerprint: str
    first_seen_at: str
    accepted_at: str | None
    accepted_by: str | None
    description: str | None
    annotations: dict[str, Any] | None
    input_schema: dict[str, Any] | None
    definition: dict[str, Any]
    drift: Drift | None


class AcceptTool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upstream: str | None = Field(
        default=None, description="The upstream's name; may be left out when only one upstream has the tool."
    )


class Comment(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)


class Reason(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


class RequiredReason(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class Ticket(Open):
    id: str
    status: str
    tool_name: str
    tool_input: Any
    requested_at: str
    timeout_at: str
    approvers: list[str]


class LimitBucket(Open):
    kind: str
    bucket: str
    current: Any
    limit: Any
    reset_at: str | None


class Budget(Open):
    name: str
    limit: str
    currency: str
    epoch: int
    buckets: list[dict[str, Any]]


class LedgerRow(Open):
    pass
