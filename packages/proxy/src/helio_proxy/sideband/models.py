"""Pydantic models of the sideband's bodies and answers (they make its OpenAPI schema).

The routes validate bodies with :mod:`.requests` (whose messages and ``field`` names are part of
the wire contract); these models describe the same contract for the schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from helio_proxy.evidence.store import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS
from helio_proxy.session.identity import MAX_SESSION_ID_LENGTH


class SidebandErrorBody(BaseModel):
    """Every sideband error: ``{error, code, details?}``; extra fields of older answers
    (``field``, ``limit``, ``key``, ``allowed_keys``, ``allowed_key_count``) are repeated at the top
    level for the ``helio-client`` 0.16 SDK."""

    model_config = ConfigDict(extra="allow")
    error: str
    code: str
    details: dict[str, Any] | None = None


class Health(BaseModel):
    status: str


class Ok(BaseModel):
    ok: bool


class EvidenceReceipt(BaseModel):
    ok: bool
    evidence_key: str
    expires_at: float | None
    verified: bool


class EvidenceBody(BaseModel):
    session_id: str = Field(min_length=1, max_length=MAX_SESSION_ID_LENGTH, pattern=r"\S")
    tool_name: str = Field(min_length=1)
    evidence_key: str = Field(min_length=1)
    evidence_data: Any
    ttl_seconds: int = Field(default=DEFAULT_TTL_SECONDS, ge=1, le=MAX_TTL_SECONDS)
    call_id: str | None = Field(default=None, min_length=1)


class ContextBody(BaseModel):
    session_id: str = Field(min_length=1, max_length=MAX_SESSION_ID_LENGTH, pattern=r"\S")
    key: str = Field(min_length=1)
    value: Any


class DependenciesBody(BaseModel):
    session_id: str = Field(min_length=1, max_length=MAX_SESSION_ID_LENGTH, pattern=r"\S")
    tool_name: str = Field(min_length=1)
    requires: list[str] = Field(min_length=1)


class EvidenceEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    evidence_key: str
    data: Any
    tool_name: str
    timestamp: float
    expires_at: float | None


class CompletedTool(BaseModel):
    model_config = ConfigDict(extra="allow")
    tool_name: str
    timestamp: float
    succeeded: bool


class Dependency(BaseModel):
    tool_name: str
    requires: list[str]


class SessionState(BaseModel):
    session_id: str
    evidence: dict[str, EvidenceEntry]
    context: dict[str, Any]
    completed_tools: list[CompletedTool]
    dependencies: list[Dependency]
