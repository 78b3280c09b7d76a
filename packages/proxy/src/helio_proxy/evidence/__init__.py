"""Evidence, completed calls, declared dependencies and context, per session, and the gate check.

The gateway uses :class:`EvidenceService` (or the pieces under it: a :class:`SessionStore`,
:func:`check_gates`, :func:`call_succeeded`); the sideband writes SDK evidence, context and
dependencies into the same store.
"""

from helio_proxy.evidence.allowlist import (
    CurrentEvidenceIndex,
    EvidenceIndex,
    evidence_allowlist,
    evidence_producers,
)
from helio_proxy.evidence.gates import PASSED, GateReason, GateRequirements, GateResult, check_gates
from helio_proxy.evidence.memory import InMemorySessionStore
from helio_proxy.evidence.model import Clock, CompletedCall, EvidenceEntry, SessionSnapshot, to_ms
from helio_proxy.evidence.outcome import call_succeeded, new_call_id, result_digest
from helio_proxy.evidence.service import EvidenceService
from helio_proxy.evidence.sql import SqlSessionStore
from helio_proxy.evidence.store import (
    DEFAULT_TTL_SECONDS,
    MAX_TTL_SECONDS,
    SessionStore,
    StoreCapacityError,
    StoreLimits,
)
from helio_proxy.evidence.sweeper import run_sweeper

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "MAX_TTL_SECONDS",
    "PASSED",
    "Clock",
    "CompletedCall",
    "CurrentEvidenceIndex",
    "EvidenceEntry",
    "EvidenceIndex",
    "EvidenceService",
    "GateReason",
    "GateRequirements",
    "GateResult",
    "InMemorySessionStore",
    "SessionSnapshot",
    "SessionStore",
    "SqlSessionStore",
    "StoreCapacityError",
    "StoreLimits",
    "call_succeeded",
    "check_gates",
    "evidence_allowlist",
    "evidence_producers",
    "new_call_id",
    "result_digest",
    "run_sweeper",
    "to_ms",
]
