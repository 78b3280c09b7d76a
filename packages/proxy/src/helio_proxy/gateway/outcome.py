"""What governance concluded about one call, for the audit trail and metrics to pick up."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from helio_proxy.policy import Decision

shadow_log = logging.getLogger("helio_proxy.policy.shadow")


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """One governed ``tools/call``."""

    tool: str
    decision: Decision
    """What ``decide()`` returned."""
    enforced: Decision
    """What the call met: the ``Allow`` it was forwarded under, the ``Deny`` that blocked it, or a ``DryRun``."""
    shadow: Decision | None = None
    """What ``policies.shadow`` would have decided (never enforced); ``None`` when no shadow rule matched."""
    config_sha256: str = ""


OutcomeObserver = Callable[[CallOutcome], None]


@dataclass
class ShadowStats:
    """Counts of shadow decisions by (shadow action, enforced action)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter[tuple[str, str]])

    def record(self, outcome: CallOutcome) -> None:
        shadow = outcome.shadow
        if shadow is None:
            return
        self.counts[(shadow.action, outcome.enforced.action)] += 1
        shadow_log.info(
            json.dumps(
                {
                    "event": "shadow_decision",
                    "tool": outcome.tool,
                    "shadow_action": shadow.action,
                    "shadow_rule": shadow.rule,
                    "shadow_rule_index": shadow.rule_index,
                    "shadow_reason": shadow.reason,
                    "enforced_action": outcome.enforced.action,
                    "agrees": shadow.action == outcome.enforced.action,
                }
            )
        )
