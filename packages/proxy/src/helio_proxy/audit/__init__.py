"""The audit trail: one record per governed call, batched, hash-chained, scrubbed of secrets."""

from helio_proxy.audit.clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock
from helio_proxy.audit.recorder import Auditor, CallAudit
from helio_proxy.audit.records import (
    AnyRecord,
    ApprovalResolutionRecord,
    AuditRecord,
    DriftEventRecord,
    KillSwitchRecord,
    PolicyReloadRecord,
    ToolCallRecord,
    call_succeeded,
)
from helio_proxy.audit.trail import AuditTrail

__all__ = [
    "SYSTEM_CLOCK",
    "AnyRecord",
    "ApprovalResolutionRecord",
    "AuditRecord",
    "AuditTrail",
    "Auditor",
    "CallAudit",
    "Clock",
    "DriftEventRecord",
    "KillSwitchRecord",
    "ManualClock",
    "PolicyReloadRecord",
    "SystemClock",
    "ToolCallRecord",
    "call_succeeded",
]
