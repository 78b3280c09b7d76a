"""The policy engine: rules compiled once per config snapshot, and a pure ``decide()``.

Order inside :meth:`CompiledPolicy.decide` (the reference's):

1. rules, first match wins; with none, ``policies.default`` (against the tool's *baseline*
   hints; under ``on_tool_drift: log`` the stricter of the baseline and current decisions);
2. ``flag_destructive``, only when no rule matched and the tool is destructive;
3. the drift gate (``on_tool_drift``), unless the call is already denied;
4. the gates, unless already denied: the matched rule's ``evidence.requires``/``requires`` and
   the session's SDK-declared prerequisites of the tool (checked even when no rule matched);
5. dry-run: a ``dry_run`` rule, or ``policies.dry_run`` wrapping whatever was decided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal

from helio_proxy.config.policies import Rule
from helio_proxy.config.root import HelioConfig
from helio_proxy.policy.decision import (
    SEVERITY,
    Allow,
    Decision,
    Deny,
    DryRun,
    RateLimit,
    RequireApproval,
    SpendLimit,
)
from helio_proxy.policy.facts import PERMISSIVE_HINTS, CallFacts, DecisionContext, Hints
from helio_proxy.policy.gates import EMPTY_SESSION
from helio_proxy.policy.matchers import Predicate, compile_match, static_filter

TOOL_CACHE_SIZE: Final = 4096
"""(tool, hints) pairs whose candidate-rule lists are memoised (the table is cleared when it fills)."""

DEFAULT_CONTEXT: Final = DecisionContext()


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to evaluate."""

    name: str
    index: int
    rule: Rule
    predicate: Predicate
    static: Callable[[str, Hints], bool]
    """The tool-only part of the match (name glob, annotations)."""
    decision: Decision
    """What the rule decides when it matches, before the gates (a frozen value, made once)."""


def restricts(rule: Rule) -> bool:
    """Whether matching the rule can only hold the call back: any action but ``allow``, or a gate.

    A comparison such a rule cannot decide (``gt`` on a non-number) counts as a match, so the call
    cannot fall through to a more permissive rule below it.
    """
    return rule.effective_action != "allow" or rule.is_gate


def _compile_rules(rules: list[Rule], environment: str | None, prefix: str) -> tuple[CompiledRule, ...]:
    return tuple(_compile_rule(rule, index, environment, prefix) for index, rule in enumerate(rules))


def _compile_rule(rule: Rule, index: int, environment: str | None, prefix: str) -> CompiledRule:
    name = rule.name or f"{prefix}-{index}"
    return CompiledRule(
        name=name,
        index=index,
        rule=rule,
        predicate=compile_match(
            rule.match, environment=environment, undecided_matches=restricts(rule), static_done=True
        ),
        static=static_filter(rule.match),
        decision=_rule_decision(name, index, rule),
    )


class _RuleSet:
    """Ordered compiled rules, indexed by (tool, hints) to the ones whose tool-only part matches."""

    def __init__(self, rules: tuple[CompiledRule, ...]) -> None:
        self.rules = rules
        self._by_pair: dict[tuple[str, Hints], tuple[CompiledRule, ...]] = {}
        self._last: dict[str, tuple[Hints, tuple[CompiledRule, ...]]] = {}
        """By tool: the hints of its last call and their candidates. A tool's hints are one object
        until its annotations change, so most calls find them here by the name alone and never
        hash the hints' fields; a drifted tool, decided under two sets of hints in turn, finds
        each in ``_by_pair``."""

    def candidates(self, tool: str, hints: Hints) -> tuple[CompiledRule, ...]:
        last = self._last.get(tool)
        if last is not None and last[0] is hints:
            return last[1]
        key = (tool, hints)
        found = self._by_pair.get(key)
        if found is None:
            found = tuple(r for r in self.rules if r.static(tool, hints))
            if len(self._by_pair) >= TOOL_CACHE_SIZE:
                self._by_pair.clear()
                self._last.clear()
            self._by_pair[key] = found
        self._last[tool] = (hints, found)
        return found

    def first_match(self, call: CallFacts, hints: Hints) -> CompiledRule | None:
        for compiled in self.candidates(call.tool, hints):
            if compiled.predicate(call, hints):
                return compiled
        return None


def _rule_decision(name: str, index: int, rule: Rule) -> Decision:
    feedback = rule.feedback
    match rule.effective_action:
        case "allow":
            return Allow(reason="rule_matched", rule=name, rule_index=index, feedback=feedback)
        case "deny":
            return Deny(
                reason="policy_denied",
                policy_reason="rule_deny",
                rule=name,
                rule_index=index,
                feedback=feedback,
            )
        case "require_approval":
            return RequireApproval(
                reason="rule_matched", route=rule.approval, rule=name, rule_index=index, feedback=feedback
            )
        case "rate_limit":
            assert rule.limits is not None
            return RateLimit(
                reason="rule_matched", limits=rule.limits, rule=name, rule_index=index, feedback=feedback
            )
        case "spend_limit":
            assert rule.limits is not None
            return SpendLimit(
                reason="rule_matched", limits=rule.limits, rule=name, rule_index=index, feedback=feedback
            )
        case "dry_run":
            return DryRun(
                reason="rule_matched",
                would=Allow(reason="rule_matched", rule=name, rule_index=index, feedback=feedback),
                global_switch=False,
                rule=name,
                rule_index=index,
                feedback=feedback,
            )


def _gate(
    compiled: CompiledRule | None, decision: Decision, call: CallFacts, context: DecisionContext
) -> Decision:
    if decision.blocks:
        return decision
    rule = compiled.rule if compiled is not None else None
    result = (context.gates or EMPTY_SESSION).check(call.tool, rule, call.arguments)
    if result.passed:
        # What satisfied the gate goes to the audit record with the decision.
        return replace(decision, gate=result) if result.satisfied else decision
    return Deny(
        rule=compiled.name if compiled is not None else None,
        rule_index=compiled.index if compiled is not None else None,
        reason=result.reason or "evidence_missing",
        feedback=rule.feedback if rule is not None else None,
        retry_allowed=result.retry_allowed,
        policy_reason="session_unresolved" if result.session_unresolved else None,
        gate=result,
        drifted_aspects=decision.drifted_aspects,
    )


class CompiledPolicy:
    """One config snapshot's policy, compiled. :meth:`decide` does no I/O and never awaits."""

    def __init__(self, config: HelioConfig) -> None:
        policies = config.policies
        self.default: Literal["allow", "deny"] = policies.default
        self.flag_destructive = policies.flag_destructive
        self.on_tool_drift = policies.on_tool_drift
        self.dry_run = policies.dry_run
        self._rules = _RuleSet(_compile_rules(policies.rules, config.environment, "rule"))
        self._shadow = _RuleSet(_compile_rules(policies.shadow, config.environment, "shadow"))
        self.has_data_plane_rules = any(rule.data_plane is not None for rule in policies.rules)
        """Whether any rule carries ``data_plane`` settings (else :meth:`data_plane_rule` is ``None``)."""
        # What no matching rule decides, made once (frozen values; a call only reads them).
        self._default_deny = Deny(reason="policy_denied", policy_reason="default_deny")
        self._destructive_held = RequireApproval(reason="flag_destructive")
        self._default_allow = Allow(reason="default")
        self._destructive_flagged = Allow(reason="default", flagged_destructive=True)

    def _no_match(self, hints: Hints) -> Decision:
        if self.default == "deny":
            return self._default_deny
        if hints.destructiveHint:
            if self.flag_destructive == "require_approval":
                return self._destructive_held
            if self.flag_destructive == "log":
                return self._destructive_flagged
        return self._default_allow

    def _evaluate(self, call: CallFacts, hints: Hints) -> tuple[Decision, CompiledRule | None]:
        compiled = self._rules.first_match(call, hints)
        if compiled is None:
            return self._no_match(hints), None
        return compiled.decision, compiled

    def data_plane_rule(self, call: CallFacts, hints: Hints) -> int | None:
        """The index of the first rule matching ``call`` when that rule carries ``data_plane`` settings.

        The same first match :meth:`decide` starts from (against the tool's baseline hints), so the
        data plane, which runs before the decision, applies the modes of the rule that will decide.
        """
        if not self.has_data_plane_rules:
            return None
        compiled = self._rules.first_match(call, hints)
        if compiled is None or compiled.rule.data_plane is None:
            return None
        return compiled.index

    def decide(self, call: CallFacts, context: DecisionContext = DEFAULT_CONTEXT) -> Decision:
        """The decision for ``call``; the same inputs always give the same decision."""
        tool = context.tool
        decision, compiled = self._evaluate(call, tool.hints)
        if tool.pending and isinstance(decision, Deny):
            # Blocked only because the tool's annotations are not known yet? Then say so: the
            # agent may retry once the proxy has listed the upstream's tools.
            other, _ = self._evaluate(call, PERMISSIVE_HINTS)
            if not other.blocks:
                return self._finish(
                    Deny(
                        reason="baselines_unavailable",
                        rule=decision.rule,
                        rule_index=decision.rule_index,
                        blocked_action=decision.blocked_action,
                        retry_allowed=True,
                    )
                )
        if tool.drifted:
            if self.on_tool_drift == "log":
                if tool.current_hints is not None and tool.current_hints != tool.hints:
                    other, other_rule = self._evaluate(call, tool.current_hints)
                    if SEVERITY[other.action] > SEVERITY[decision.action]:
                        decision, compiled = other, other_rule
                decision = _with_drift(decision, tool.drifted_aspects)
            elif not decision.blocks:
                aspects = tool.drifted_aspects
                if self.on_tool_drift == "block":
                    return self._finish(
                        Deny(reason="tool_definition_drift", drifted_aspects=aspects, retry_allowed=False)
                    )
                decision = RequireApproval(reason="tool_definition_drift", drifted_aspects=aspects)
        return self._finish(_gate(compiled, decision, call, context))

    def _finish(self, decision: Decision) -> Decision:
        if self.dry_run and not isinstance(decision, DryRun):
            return DryRun(
                rule=decision.rule,
                rule_index=decision.rule_index,
                reason=decision.reason,
                would=decision,
                global_switch=True,
                flagged_destructive=decision.flagged_destructive,
                drifted_aspects=decision.drifted_aspects,
            )
        return decision

    def decide_shadow(self, call: CallFacts, context: DecisionContext = DEFAULT_CONTEXT) -> Decision | None:
        """What the first matching ``policies.shadow`` rule would decide (``None`` if none matches)."""
        if not self._shadow.rules:
            return None
        compiled = self._shadow.first_match(call, context.tool.hints)
        if compiled is None:
            return None
        return _gate(compiled, compiled.decision, call, context)


def _with_drift(decision: Decision, aspects: tuple[str, ...]) -> Decision:
    return replace(decision, drifted_aspects=aspects)


def compile_policy(config: HelioConfig) -> CompiledPolicy:
    """Compile the policy of a validated config."""
    return CompiledPolicy(config)
