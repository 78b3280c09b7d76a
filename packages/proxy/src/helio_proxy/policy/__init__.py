"""The policy engine: pure, compiled once per config snapshot.

``compile_policy(config).decide(call, context)`` returns a :data:`Decision` value and does no
I/O. See ``docs/policies.md`` for the rule language.
"""

from helio_proxy.policy.baselines import (
    BaselineCache,
    BaselineStore,
    DriftEvent,
    MemoryBaselineStore,
    PendingDrift,
    ToolBaseline,
)
from helio_proxy.policy.decision import Allow, Decision, Deny, DryRun, RateLimit, RequireApproval, SpendLimit
from helio_proxy.policy.engine import CompiledPolicy, compile_policy
from helio_proxy.policy.facts import CallFacts, DecisionContext, GateChecker, Hints, ToolFacts
from helio_proxy.policy.feedback import block_feedback, simulation_report
from helio_proxy.policy.gates import EMPTY_SESSION, UNRESOLVED_GATES, SnapshotGates

__all__ = [
    "EMPTY_SESSION",
    "UNRESOLVED_GATES",
    "Allow",
    "BaselineCache",
    "BaselineStore",
    "CallFacts",
    "CompiledPolicy",
    "Decision",
    "DecisionContext",
    "Deny",
    "DriftEvent",
    "DryRun",
    "GateChecker",
    "Hints",
    "MemoryBaselineStore",
    "PendingDrift",
    "RateLimit",
    "RequireApproval",
    "SnapshotGates",
    "SpendLimit",
    "ToolBaseline",
    "ToolFacts",
    "block_feedback",
    "compile_policy",
    "simulation_report",
]
