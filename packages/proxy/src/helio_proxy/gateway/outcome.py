"""Observers of what governance concluded about each call, and the shadow policy's statistics.

The outcome itself, :class:`~helio_proxy.governance.CallOutcome`, lives in the neutral
:mod:`helio_proxy.governance`, so the audit recorder (below the gateway) maps it to the record.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from helio_proxy.governance import CallOutcome

__all__ = ["CallOutcome", "OutcomeObserver", "ShadowStats"]

shadow_log = logging.getLogger("helio_proxy.policy.shadow")


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
