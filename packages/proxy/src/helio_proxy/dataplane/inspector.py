"""The data plane of one upstream: what a call may carry before it is forwarded, and what of the
answer reaches the agent.

Before the forward (:meth:`DataPlane.check_call`): the tool must be listed (``tool_not_found``),
its arguments must match its ``inputSchema`` (``invalid_arguments``) and pass the argument scan
(``sensitive_content``, or redacted). After the answer (:meth:`DataPlane.result_check`): the
result's ``structuredContent`` must match ``outputSchema`` (``invalid_result``) and pass the
result scan. Each check runs in the mode the snapshot in force gives it (``enforce``, ``warn``,
``off``); findings go to the audit record's ``metadata.data_plane``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from helio_proxy.config import HelioConfig
from helio_proxy.config.data_plane import DataPlaneChecks, Mode, RuleDataPlane
from helio_proxy.dataplane.facts import DataPlaneFacts, SchemaFacts
from helio_proxy.dataplane.scanning import CompiledRule, Finding, compile_globs, compile_rule, scan
from helio_proxy.dataplane.schemas import SchemaError, ValidatorCache
from helio_proxy.dataplane.tools import ToolInventory
from helio_proxy.jsonrpc import POLICY_BLOCKED
from helio_proxy.policy import BaselineCache, Deny

INVALID_ARGUMENTS: Final = "invalid_arguments"
TOOL_NOT_FOUND: Final = "tool_not_found"
INVALID_RESULT: Final = "invalid_result"
SENSITIVE_CONTENT: Final = "sensitive_content"

MAX_TOOL_MODES: Final = 10_000
"""Tools whose resolved modes are cached per snapshot (tool names come from agents)."""

Check = Literal["input_schema", "output_schema", "unknown_tools"]
CHECKS: Final[tuple[Check, ...]] = ("input_schema", "output_schema", "unknown_tools")


@dataclass(frozen=True, slots=True)
class _Override:
    tools: re.Pattern[str]
    upstreams: frozenset[str] | None
    checks: DataPlaneChecks


class Plan:
    """The data-plane settings of one config snapshot, compiled once (rules, globs, modes)."""

    def __init__(self, config: HelioConfig, upstream: str | None) -> None:
        data_plane = config.data_plane
        own = next((u.data_plane for u in config.upstream_list if u.name == upstream), DataPlaneChecks())
        self.upstream = upstream
        self.refresh_interval = float(data_plane.refresh_interval.seconds)
        self._base: dict[Check, Mode] = {
            check: _first(getattr(own, check), own.mode, getattr(data_plane, check), data_plane.mode)
            for check in CHECKS
        }
        self._overrides = [
            _Override(compile_globs(o.tools), frozenset(o.upstreams) if o.upstreams is not None else None, o)
            for o in data_plane.tools
            if o.upstreams is None or (upstream or "") in o.upstreams
        ]
        rules: list[CompiledRule] = []
        for rule in data_plane.scan:
            compiled = compile_rule(rule, _first(rule.mode, data_plane.mode))
            if compiled is not None and (
                compiled.upstreams is None or (upstream or "") in compiled.upstreams
            ):
                rules.append(compiled)
        self.rules = rules
        self._modes: dict[str, dict[Check, Mode]] = {}
        self._policy_rules = config.policies.rules
        self._global_mode: Mode | None = data_plane.mode
        self._rule_scans: dict[int, list[CompiledRule]] = {}
        self._scans: dict[tuple[str, str, int | None], tuple[CompiledRule, ...]] = {}

    def rule_name(self, rule: int | None) -> str | None:
        """The name of policy rule ``rule`` as the audit and feedback give it."""
        if rule is None or not 0 <= rule < len(self._policy_rules):
            return None
        return self._policy_rules[rule].name or f"rule-{rule}"

    def _rule_settings(self, rule: int | None) -> RuleDataPlane | None:
        if rule is None or not 0 <= rule < len(self._policy_rules):
            return None
        return self._policy_rules[rule].data_plane

    def modes(self, tool: str, rule: int | None = None) -> dict[Check, Mode]:
        """Each check's mode for ``tool``: the matched policy rule's ``data_plane`` (``rule``, an index
        into ``policies.rules``), then the first matching ``data_plane.tools`` entry, the upstream's
        and the global modes."""
        found = self._tool_modes(tool)
        settings = self._rule_settings(rule)
        if settings is None:
            return found
        return {check: _first(getattr(settings, check), settings.mode, found[check]) for check in CHECKS}

    def _tool_modes(self, tool: str) -> dict[Check, Mode]:
        cached = self._modes.get(tool)
        if cached is not None:
            return cached
        found: dict[Check, Mode] = self._base
        for override in self._overrides:
            if override.tools.match(tool):
                checks = override.checks
                found = {
                    check: _first(getattr(checks, check), checks.mode, self._base[check]) for check in CHECKS
                }
                break
        if len(self._modes) < MAX_TOOL_MODES:
            self._modes[tool] = found
        return found

    def rules_for(
        self, tool: str, scope: Literal["arguments", "results"], rule: int | None = None
    ) -> tuple[CompiledRule, ...]:
        """The scan rules for ``tool``: the global ones, then those of the matched policy rule
        (worked out once per tool, scope and rule: a plan's rules never change)."""
        key = (tool, scope, rule)
        cached = self._scans.get(key)
        if cached is not None:
            return cached
        found = [r for r in self.rules if r.applies(tool, self.upstream, scope)]
        if rule is not None:
            found.extend(r for r in self._scans_of(rule) if r.applies(tool, self.upstream, scope))
        scans = tuple(found)
        if len(self._scans) < MAX_TOOL_MODES:
            self._scans[key] = scans
        return scans

    def _scans_of(self, rule: int) -> list[CompiledRule]:
        cached = self._rule_scans.get(rule)
        if cached is not None:
            return cached
        settings = self._rule_settings(rule)
        compiled_rules: list[CompiledRule] = []
        if settings is not None:
            for scan_rule in settings.scan:
                compiled = compile_rule(scan_rule, _first(scan_rule.mode, settings.mode, self._global_mode))
                if compiled is not None:
                    compiled_rules.append(compiled)
        self._rule_scans[rule] = compiled_rules
        return compiled_rules


def _first(*modes: Mode | None) -> Mode:
    for mode in modes:
        if mode is not None:
            return mode
    return "enforce"


@dataclass
class CallCheck:
    """What the data plane concluded before the forward."""

    deny: Deny | None = None
    arguments: dict[str, Any] | None = None
    """The arguments to forward instead (redacted), or ``None`` to forward them unchanged."""
    facts: DataPlaneFacts | None = None
    """What the audit record says of the check (``None`` when there is nothing to say)."""
    block_reason: str | None = None
    """A finding the call is forwarded with anyway (``warn``), for the audit record."""


@dataclass
class ResultCheck:
    """What the data plane does with the call's answer (built before the forward)."""

    plan: Plan
    tool: str
    fingerprint: str | None
    definition: dict[str, Any] | None
    validators: ValidatorCache
    audit_metadata: Callable[[DataPlaneFacts, str | None], None]
    """Records what the check found (and a block reason) on the call's audit record."""
    stats: DataPlaneStats | None = None
    """Where findings and blocks are counted."""
    replaced: dict[str, Any] | None = None
    """The answer the agent gets instead of the upstream's (redacted or turned into an error)."""
    rule: int | None = None
    """The matched policy rule whose ``data_plane`` settings apply (an index into ``policies.rules``)."""

    def observe(self, payload: dict[str, Any] | None, _error: object) -> None:
        """The relay's observer: inspect the upstream's answer in place (before anyone records it)."""
        if payload is None or not isinstance(payload.get("result"), dict):
            return
        result = cast(dict[str, Any], payload["result"])
        modes = self.plan.modes(self.tool, self.rule)
        output_schema: SchemaFacts | None = None
        findings: tuple[Finding, ...] = ()
        reason: str | None = None
        error: tuple[str, dict[str, Any]] | None = None
        structured = result.get("structuredContent")
        if (
            modes["output_schema"] != "off"
            and self.definition is not None
            and self.fingerprint is not None
            and result.get("isError") is not True
        ):
            has_schema = isinstance(self.definition.get("outputSchema"), dict)
            errors: list[SchemaError] = []
            if has_schema and structured is None:
                errors = [
                    SchemaError("$", "structuredContent is required by the tool's outputSchema", "required")
                ]
            elif has_schema:
                errors = self.validators.errors(self.fingerprint, self.definition, "outputSchema", structured)
            if errors:
                output_schema = SchemaFacts(modes["output_schema"], tuple(errors))
                reason = INVALID_RESULT
                if modes["output_schema"] == "enforce":
                    error = (
                        f"The result of {self.tool} does not match its outputSchema; it was withheld.",
                        {"reason": INVALID_RESULT, "errors": [e.as_dict() for e in errors]},
                    )
        rules = self.plan.rules_for(self.tool, "results", self.rule)
        if rules and error is None:
            outcome = scan(result, rules, "results", "$.result")
            if outcome.findings:
                findings = tuple(outcome.findings)
                reason = reason or SENSITIVE_CONTENT
                if outcome.action == "block":
                    error = (
                        f"The result of {self.tool} carries sensitive content; it was withheld.",
                        {"reason": SENSITIVE_CONTENT, "findings": _public(outcome.findings)},
                    )
                elif outcome.changed:
                    payload["result"] = outcome.value
                    self.replaced = payload
        if error is not None:
            message, data = error
            payload.pop("result", None)
            payload["error"] = {
                "code": POLICY_BLOCKED,
                "message": message,
                "data": {"blocked": True, "action": "deny", "retry_allowed": False, **data},
            }
            self.replaced = payload
        if self.stats is not None:
            self.stats.count(findings, reason if error is not None else None)
        if output_schema is not None or findings:
            facts = DataPlaneFacts(
                rule=self.plan.rule_name(self.rule), output_schema=output_schema, findings=findings
            )
            # A block reason only when the agent got the error instead of the result.
            self.audit_metadata(facts, reason if error is not None else None)


def _public(findings: list[Finding]) -> list[dict[str, str]]:
    """What the agent is told of findings: kind, where, and the rule (never the matched text)."""
    return [{"rule": f.rule, "kind": f.kind, "path": f.path} for f in findings]


@dataclass
class DataPlaneStats:
    """Counters for metrics: scan findings by (rule, kind, action), blocks by reason."""

    findings: Counter[tuple[str, str, str]] = field(default_factory=Counter[tuple[str, str, str]])
    blocks: Counter[str] = field(default_factory=Counter[str])

    def count(self, findings: tuple[Finding, ...], blocked: str | None) -> None:
        for finding in findings:
            self.findings[(finding.rule, finding.kind, finding.action)] += 1
        if blocked is not None:
            self.blocks[blocked] += 1


class DataPlane:
    """Schema checks, unknown-tool refusal and content scanning for one upstream's calls."""

    def __init__(
        self,
        baselines: BaselineCache,
        upstream: str | None,
        *,
        inventory: ToolInventory | None = None,
        credential: str | None = None,
    ) -> None:
        self.baselines = baselines
        self.upstream = upstream
        self.inventory = inventory if inventory is not None else ToolInventory()
        self.credential = credential
        """The name of the credential this upstream is reached with (audited; never the value)."""
        self.validators = ValidatorCache()
        self.stats = DataPlaneStats()
        """Findings and blocks so far (what a metrics exporter reads)."""
        self._plans: dict[int, tuple[HelioConfig, Plan]] = {}

    def plan(self, config: HelioConfig) -> Plan:
        """The compiled settings of ``config`` (compiled once per snapshot)."""
        found = self._plans.get(id(config))
        if found is None or found[0] is not config:
            if len(self._plans) > 8:
                self._plans.clear()
            found = (config, Plan(config, self.upstream))
            self._plans[id(config)] = found
        return found[1]

    def check_call_now(
        self, config: HelioConfig, tool: str, arguments: dict[str, Any], rule: int | None = None
    ) -> CallCheck | None:
        """:meth:`check_call`'s answer when it needs nothing awaited: ``unknown_tools`` is off for
        the call, or the tool is on the upstream's list as last seen (most calls). ``None``: the
        list may need fetching, await :meth:`check_call`."""
        plan = self.plan(config)
        modes = plan.modes(tool, rule)
        if modes["unknown_tools"] != "off" and not self.inventory.known(tool):
            return None
        return self._counted(self._checked(plan, modes, tool, arguments, rule, CallCheck(), None))

    async def check_call(
        self, config: HelioConfig, tool: str, arguments: dict[str, Any], rule: int | None = None
    ) -> CallCheck:
        """Run the before-forward checks for one call; ``rule`` is the index of the matched policy
        rule whose ``data_plane`` settings apply (see ``CompiledPolicy.data_plane_rule``)."""
        plan = self.plan(config)
        modes = plan.modes(tool, rule)
        out = CallCheck()
        unknown: Mode | None = None
        if modes["unknown_tools"] != "off":
            listed = await self.inventory.lists(tool, min_interval=plan.refresh_interval)
            if listed is False:
                unknown = modes["unknown_tools"]
                out.block_reason = TOOL_NOT_FOUND
                if unknown == "enforce":
                    out.deny = Deny(reason=TOOL_NOT_FOUND, retry_allowed=False, details={"tool": tool})
                    out.facts = self._facts(plan, rule, unknown=unknown)
                    return self._counted(out)
        return self._counted(self._checked(plan, modes, tool, arguments, rule, out, unknown))

    def _counted(self, out: CallCheck) -> CallCheck:
        if out.facts is not None or out.deny is not None:
            findings = out.facts.findings if out.facts is not None else ()
            self.stats.count(findings, out.deny.reason if out.deny is not None else None)
        return out

    def _checked(
        self,
        plan: Plan,
        modes: Mapping[Check, Mode],
        tool: str,
        arguments: dict[str, Any],
        rule: int | None,
        out: CallCheck,
        unknown: Mode | None,
    ) -> CallCheck:
        """The checks after the tool list's: arguments against the input schema, the scan."""
        input_schema: SchemaFacts | None = None
        baseline = self.baselines.store.get(tool)
        if modes["input_schema"] != "off" and baseline is not None:
            errors = self.validators.errors(
                baseline.fingerprint, baseline.definition, "inputSchema", arguments
            )
            if errors:
                input_schema = SchemaFacts(modes["input_schema"], tuple(errors))
                out.block_reason = out.block_reason or INVALID_ARGUMENTS
                if input_schema.mode == "enforce":
                    out.deny = Deny(
                        reason=INVALID_ARGUMENTS,
                        retry_allowed=True,
                        details={"errors": [e.as_dict() for e in errors]},
                    )
                    out.facts = self._facts(plan, rule, unknown=unknown, input_schema=input_schema)
                    return out
        findings: tuple[Finding, ...] = ()
        rules = plan.rules_for(tool, "arguments", rule)
        if rules:
            outcome = scan(arguments, rules, "arguments", "$.arguments")
            if outcome.findings:
                findings = tuple(outcome.findings)
                out.block_reason = out.block_reason or SENSITIVE_CONTENT
                if outcome.action == "block":
                    out.deny = Deny(
                        reason=SENSITIVE_CONTENT,
                        retry_allowed=True,
                        details={"findings": _public(outcome.findings)},
                    )
                elif outcome.changed:
                    out.arguments = cast(dict[str, Any], outcome.value)
        out.facts = self._facts(plan, rule, unknown=unknown, input_schema=input_schema, findings=findings)
        return out

    def _facts(
        self,
        plan: Plan,
        rule: int | None,
        *,
        unknown: Mode | None = None,
        input_schema: SchemaFacts | None = None,
        findings: tuple[Finding, ...] = (),
    ) -> DataPlaneFacts | None:
        """What the record says of the checks before the forward (``None``: nothing to say)."""
        label = plan.rule_name(rule)
        nothing = unknown is None and input_schema is None and not findings
        if nothing and self.credential is None and label is None:
            return None  # the common case, told without building the (frozen) facts: ~1 µs
        return DataPlaneFacts(
            credential=self.credential,
            rule=label,
            unknown_tool=unknown,
            input_schema=input_schema,
            findings=findings,
        )

    def result_check(
        self,
        config: HelioConfig,
        tool: str,
        audit_metadata: Callable[[DataPlaneFacts, str | None], None],
        rule: int | None = None,
    ) -> ResultCheck | None:
        """The after-answer check for a forwarded call (``None`` when nothing applies)."""
        plan = self.plan(config)
        baseline = self.baselines.store.get(tool)
        wants_schema = (
            plan.modes(tool, rule)["output_schema"] != "off"
            and baseline is not None
            and isinstance(baseline.definition.get("outputSchema"), dict)
        )
        if not wants_schema and not plan.rules_for(tool, "results", rule):
            return None
        return ResultCheck(
            plan,
            tool,
            baseline.fingerprint if baseline is not None else None,
            dict(baseline.definition) if baseline is not None else None,
            self.validators,
            audit_metadata,
            self.stats,
            rule=rule,
        )
