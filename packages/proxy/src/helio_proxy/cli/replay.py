"""``helio policy replay``: the audited calls of a window, decided again by a (new) config.

Nothing is forwarded and nothing is written: each recorded ``tools/call`` becomes the
:class:`CallFacts` the proxy decided on (tool, recorded arguments, upstream, session) and goes
through the new config's compiled policy. What is compared is the *policy* decision (the rule's
action, as the audit record's ``policy_decision`` holds it), not what enforcement made of it
later (an operator's approval, a limit's counter), which a replay cannot know.

What a replay takes from the record rather than recomputing:

* the tool's annotations are its baseline in the store today (as ``helio policy test``);
* a call the tool's drift blocked or held for approval stays drifted (the drifted aspects come
  from the record's ``evidence_chain.tool_drift``);
* gates (evidence, prerequisites) are as they were: unmet with the recorded missing items when
  the call was blocked for them, met otherwise; a call without a session can never pass a gate,
  as in the proxy. A gate the new config adds on a call with a session is therefore taken as
  met; the summary counts those calls (``assumed_gates``) so a reader knows.

Arguments are the recorded ones, after redaction: a rule matching a redacted field (a password,
a card number, an ``audit.redact`` pattern) sees the ``[REDACTED]`` placeholder.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Connection, select

from helio_proxy.baselines import StoredTool, baseline_key, load_tools
from helio_proxy.config import LoadedConfig
from helio_proxy.config.policies import Rule
from helio_proxy.evidence.gates import PASSED, GateResult
from helio_proxy.policy import (
    CallFacts,
    DecisionContext,
    Deny,
    DryRun,
    SnapshotGates,
    ToolFacts,
    compile_policy,
)
from helio_proxy.policy.decision import Decision
from helio_proxy.policy.facts import GateChecker
from helio_proxy.store import Store
from helio_proxy.store.base import time_text
from helio_proxy.store.tables import AUDIT_RECORDS

PAGE_SIZE: Final = 5000
"""Records read per query."""

GATE_REASONS: Final = frozenset(
    {"evidence_missing", "evidence_mismatch", "evidence_expired", "dependency_missing"}
)
DEFAULT_RULE: Final = "(default)"
"""How calls no rule matched are named in the per-rule summary."""

_C = AUDIT_RECORDS.c
_COLUMNS = (
    _C.seq,
    _C.id,
    _C.timestamp,
    _C.tool_name,
    _C.tool_input,
    _C.policy_decision,
    _C.matched_rule,
    _C.block_reason,
    _C.session_id,
    _C.metadata,
    _C.evidence_chain,
)


def decision_label(decision: Decision) -> str:
    """The ``policy_decision`` the proxy records for ``decision``."""
    if isinstance(decision, DryRun):
        return decision.policy_decision
    if isinstance(decision, Deny):
        return decision.blocked_action
    return decision.action


@dataclass(frozen=True, slots=True)
class _RecordedGates:
    """Gates as the record says they were (see the module docstring)."""

    result: GateResult

    def check(self, tool: str, rule: Rule | None, arguments: Any = None) -> GateResult:
        return self.result


_MET = _RecordedGates(PASSED)
_RECORDED_MET = _RecordedGates(PASSED)
"""A gate the record says was met (``evidence_chain.gate.passed``), as opposed to one assumed met."""


def _object(text: str | None) -> dict[str, Any] | None:
    """A JSON column holding an object, or ``None`` (empty, not JSON, or not an object)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return cast(dict[str, Any], value) if isinstance(value, dict) else None


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in cast(list[Any], value)) if isinstance(value, list) else ()


_UNRESOLVED: Final = SnapshotGates(None, now_ms=0)
"""A call without a session: a gate can never pass (``session_unresolved``), as in the proxy."""


def _gates(row: Mapping[str, Any], session_id: str | None) -> GateChecker:
    if session_id is None:
        return _UNRESOLVED
    gate = (_object(row["evidence_chain"]) or {}).get("gate")
    found = cast(dict[str, Any], gate) if isinstance(gate, dict) else {}
    if row["block_reason"] not in GATE_REASONS:
        # An allowed gated call records what met its gate: then it is known, not assumed.
        return _RECORDED_MET if found.get("passed") is True else _MET
    mismatched = found.get("mismatched_evidence")
    return _RecordedGates(
        GateResult(
            missing_evidence=_names(found.get("missing_evidence")),
            expired_evidence=_names(found.get("expired_evidence")),
            mismatched_evidence=tuple(
                cast(dict[str, Any], m) for m in cast(list[Any], mismatched) if isinstance(m, dict)
            )
            if isinstance(mismatched, list)
            else (),
            missing_dependencies=_names(found.get("missing_dependencies")),
        )
    )


def _drifted(row: Mapping[str, Any], facts: ToolFacts) -> ToolFacts:
    """The tool as it was: drifted when the record says so (a drift block, or a drift approval,
    whose ``evidence_chain.tool_drift`` names the aspects), else as baselined."""
    drift = (_object(row["evidence_chain"]) or {}).get("tool_drift")
    if not isinstance(drift, dict) and row["block_reason"] != "tool_definition_drift":
        return facts
    aspects = _names(cast(dict[str, Any], drift).get("drifted_aspects")) if isinstance(drift, dict) else ()
    return ToolFacts(hints=facts.hints, known=facts.known, drifted_aspects=aspects or ("recorded",))


@dataclass(frozen=True, slots=True)
class Flip:
    """One call whose policy decision the new config changes."""

    seq: int
    record_id: str
    timestamp: str
    tool: str
    session_id: str | None
    before: str
    before_rule: str | None
    after: str
    after_rule: str | None
    after_reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.record_id,
            "timestamp": self.timestamp,
            "tool": self.tool,
            "session_id": self.session_id,
            "before": {"decision": self.before, "rule": self.before_rule},
            "after": {"decision": self.after, "rule": self.after_rule, "reason": self.after_reason},
        }


@dataclass
class RuleCounts:
    before: int = 0
    """Calls this rule decided when they were made."""
    after: int = 0
    """Calls it decides in the replay."""
    flips: int = 0
    """Calls it decides in the replay whose decision changed."""


@dataclass
class ReplayReport:
    config: str
    store: str
    since: datetime
    until: datetime
    calls: int = 0
    before: Counter[str] = field(default_factory=Counter[str])
    after: Counter[str] = field(default_factory=Counter[str])
    flips: list[Flip] = field(default_factory=list[Flip])
    rules: dict[str, RuleCounts] = field(default_factory=dict[str, RuleCounts])
    rule_changes: int = 0
    """Calls decided the same way but by another rule."""
    assumed_gates: int = 0
    """Calls a gate of the new config decided without a recorded gate outcome (taken as met)."""
    seconds: float = 0.0

    def _rule(self, name: str | None) -> RuleCounts:
        key = name or DEFAULT_RULE
        counts = self.rules.get(key)
        if counts is None:
            counts = self.rules[key] = RuleCounts()
        return counts

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    def transitions(self) -> Counter[tuple[str, str]]:
        return Counter((flip.before, flip.after) for flip in self.flips)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "store": self.store,
            "since": time_text(self.since),
            "until": time_text(self.until),
            "calls": self.calls,
            "seconds": round(self.seconds, 4),
            "calls_per_second": round(self.rate),
            "before": dict(sorted(self.before.items())),
            "after": dict(sorted(self.after.items())),
            "flipped": len(self.flips),
            "transitions": [
                {"before": b, "after": a, "calls": n} for (b, a), n in sorted(self.transitions().items())
            ],
            "rule_changes": self.rule_changes,
            "assumed_gates": self.assumed_gates,
            "rules": {
                name: {"before": c.before, "after": c.after, "flips": c.flips}
                for name, c in sorted(self.rules.items())
            },
            "flips": [flip.to_json() for flip in self.flips],
        }


def _pages(store: Store, since: datetime, until: datetime) -> Iterator[list[dict[str, Any]]]:
    after = 0
    low, high = time_text(since), time_text(until)
    while True:
        query = (
            select(*_COLUMNS)
            .where(
                _C.seq > after,
                _C.record_kind == "tool_call",
                _C.tool_name.is_not(None),
                _C.policy_decision.is_not(None),
                _C.policy_decision != "rejected",
                _C.timestamp >= low,
                _C.timestamp < high,
            )
            .order_by(_C.seq)
            .limit(PAGE_SIZE)
        )

        def job(conn: Connection, query: Any = query) -> list[dict[str, Any]]:
            return [dict(row._mapping) for row in conn.execute(query)]  # pyright: ignore[reportPrivateUsage]

        rows = store.read_sync(job)
        if not rows:
            return
        yield rows
        after = int(rows[-1]["seq"])


def _baselines(loaded: LoadedConfig, store: Store) -> dict[tuple[str | None, str], ToolFacts]:
    out: dict[tuple[str | None, str], ToolFacts] = {}
    for upstream in loaded.config.upstream_list:
        stored: list[StoredTool] = store.read_sync(load_tools(baseline_key(upstream.name)))
        for tool in stored:
            out[(upstream.name, tool.name)] = ToolFacts(hints=tool.baseline.hints, known=True)
    return out


def replay(
    loaded: LoadedConfig,
    store: Store,
    since: datetime,
    until: datetime,
    rows: Iterable[list[dict[str, Any]]] | None = None,
) -> ReplayReport:
    """Decide every recorded call of ``[since, until)`` in ``store`` again with ``loaded``'s policy."""
    policy = compile_policy(loaded.config)
    facts_of = _baselines(loaded, store)
    unknown = ToolFacts()
    report = ReplayReport(str(loaded.path), store.description, since, until)
    started = time.perf_counter()
    for page in rows if rows is not None else _pages(store, since, until):
        for row in page:
            metadata = _object(row["metadata"]) or {}
            upstream = metadata.get("upstream")
            upstream = upstream if isinstance(upstream, str) else None
            tool: str = row["tool_name"]
            facts = facts_of.get((upstream, tool), unknown)
            if row["evidence_chain"] or row["block_reason"] == "tool_definition_drift":
                facts = _drifted(row, facts)
            arguments = _object(row["tool_input"])
            session_id: str | None = row["session_id"]
            gates = _gates(row, session_id)
            call = CallFacts(
                tool=tool,
                arguments=arguments,
                upstream=upstream,
                session_id=session_id,
            )
            decision = policy.decide(call, DecisionContext(tool=facts, gates=gates))
            before: str = row["policy_decision"]
            after = decision_label(decision)
            report.calls += 1
            report.before[before] += 1
            report.after[after] += 1
            report._rule(row["matched_rule"]).before += 1  # pyright: ignore[reportPrivateUsage]
            counts = report._rule(decision.rule)  # pyright: ignore[reportPrivateUsage]
            counts.after += 1
            if gates is _MET and decision.rule is not None and _is_gate(loaded, decision.rule_index):
                report.assumed_gates += 1
            if before != after:
                counts.flips += 1
                report.flips.append(
                    Flip(
                        int(row["seq"]),
                        str(row["id"]),
                        str(row["timestamp"]),
                        tool,
                        session_id,
                        before,
                        row["matched_rule"],
                        after,
                        decision.rule,
                        decision.reason,
                    )
                )
            elif row["matched_rule"] != decision.rule:
                report.rule_changes += 1
    report.seconds = time.perf_counter() - started
    return report


def _is_gate(loaded: LoadedConfig, index: int | None) -> bool:
    rules = loaded.config.policies.rules
    return index is not None and 0 <= index < len(rules) and rules[index].is_gate


def render_text(report: ReplayReport, show: int) -> str:
    """The summary for a terminal: counts, transitions, per rule, then the first ``show`` flips."""
    lines = [
        f"Replayed {report.calls} calls from {time_text(report.since)[:19]}Z to {time_text(report.until)[:19]}Z "
        f"against {report.config} ({report.store}): {report.seconds:.2f}s, {report.rate:,.0f} calls/s",
        "Nothing was forwarded or written.",
        "",
    ]
    decisions = sorted(set(report.before) | set(report.after))
    width = max([len("DECISION"), *(len(d) for d in decisions)])
    lines.append(f"{'DECISION'.ljust(width)}  {'BEFORE':>7}  {'AFTER':>7}")
    lines += [f"{d.ljust(width)}  {report.before[d]:>7}  {report.after[d]:>7}" for d in decisions]
    lines.append("")
    lines.append(f"Would flip: {len(report.flips)} calls")
    lines += [f"  {b} -> {a}: {n}" for (b, a), n in sorted(report.transitions().items())]
    if report.rule_changes:
        lines.append(f"Same decision, another rule: {report.rule_changes} calls")
    if report.assumed_gates:
        lines.append(f"Gates taken as met (no recorded gate outcome): {report.assumed_gates} calls")
    lines.append("")
    names = sorted(report.rules)
    rule_width = max([len("RULE"), *(len(n) for n in names)])
    lines.append(f"{'RULE'.ljust(rule_width)}  {'BEFORE':>7}  {'AFTER':>7}  {'FLIPS':>6}")
    for name in names:
        c = report.rules[name]
        lines.append(f"{name.ljust(rule_width)}  {c.before:>7}  {c.after:>7}  {c.flips:>6}")
    if report.flips:
        lines.append("")
        shown = report.flips[:show]
        more = f" (first {len(shown)}; --format json lists all)" if len(shown) < len(report.flips) else ""
        lines.append(f"Calls that would flip{more}:")
        for flip in shown:
            lines.append(
                f"  #{flip.seq}  {flip.timestamp[:19]}  {flip.tool}  "
                f"{flip.before} ({flip.before_rule or 'no rule'}) -> {flip.after} ({flip.after_rule or 'no rule'})"
            )
    return "\n".join(lines) + "\n"
