"""The audit trail: one record per governed call, batched, hash-chained, scrubbed of secrets.

The recorder and the trail are imported when first asked for (PEP 562): they pull in the policy
engine, the data plane and the evidence store, which the audit writer process
(:mod:`helio_proxy.audit.sink`), importing only the records, rows and chain, does not need. Its
start took about 2 s on the benchmark VM with them, about half without.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from helio_proxy.audit.clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock
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

if TYPE_CHECKING:
    from helio_proxy.audit.recorder import Auditor, CallAudit
    from helio_proxy.audit.trail import AuditTrail

_LAZY = {"Auditor": "recorder", "CallAudit": "recorder", "AuditTrail": "trail"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


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
