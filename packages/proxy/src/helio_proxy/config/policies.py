"""``policies``: the rule list, its matchers and actions, and policy-wide switches."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, JsonValue, field_validator, model_validator

from helio_proxy.config.base import ConfigModel
from helio_proxy.config.data_plane import RuleDataPlane
from helio_proxy.config.durations import Duration, DurationField
from helio_proxy.matching.glob import compile_glob
from helio_proxy.matching.jsonpath import parse_path
from helio_proxy.matching.regex_safety import check_regex

Action = Literal["allow", "deny", "require_approval", "rate_limit", "spend_limit", "dry_run"]
LimitKey = Literal["tool", "session", "agent", "sender_id"]


class Condition(ConfigModel):
    """Operators applied to one input path; several operators on one path are ANDed."""

    eq: JsonValue = None
    """Equal to this JSON value (type-exact: ``"1"`` does not equal ``1``)."""

    neq: JsonValue = None
    """Present and not equal to this value (an absent field does not match)."""

    gt: Decimal | None = None
    """Number greater than this (numbers only: the string ``"1000"`` never matches)."""

    gte: Decimal | None = None
    """Number greater than or equal to this."""

    lt: Decimal | None = None
    """Number less than this."""

    lte: Decimal | None = None
    """Number less than or equal to this."""

    contains: str | None = None
    """String containing this substring, or an array containing this exact string element."""

    regex: str | None = None
    """String matching this regular expression (searched, not anchored); unsafe patterns are rejected at load."""

    in_: list[JsonValue] | None = Field(default=None, alias="in")
    """Equal to one of these values."""

    not_in: list[JsonValue] | None = None
    """Present and equal to none of these values."""

    exists: bool | None = None
    """``true``: the path resolves to something; ``false``: it does not."""

    @model_validator(mode="after")
    def _at_least_one(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError(
                "a condition needs at least one operator (eq, neq, gt, gte, lt, lte, contains, regex, in, not_in, exists)"
            )
        return self

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return value


class AnnotationMatch(ConfigModel):
    """Tool annotation hints to match; unknown hints take the MCP defaults (destructive until known)."""

    readOnlyHint: bool | None = None
    """Match tools whose ``readOnlyHint`` equals this (default when absent: false)."""

    destructiveHint: bool | None = None
    """Match tools whose ``destructiveHint`` equals this (default when absent: true)."""

    idempotentHint: bool | None = None
    """Match tools whose ``idempotentHint`` equals this (default when absent: false)."""

    openWorldHint: bool | None = None
    """Match tools whose ``openWorldHint`` equals this (default when absent: true)."""


class MetadataCondition(ConfigModel):
    """A condition on an adapter metadata value."""

    eq: str | None = None
    """Equal to this string."""

    neq: str | None = None
    """Present and not equal to this string."""

    contains: str | None = None
    """Containing this substring."""

    regex: str | None = None
    """Matching this regular expression."""


class Match(ConfigModel):
    """What a rule applies to. All given conditions must hold; an absent one means "any"."""

    tool: str | None = None
    """Glob on the tool name (``*``, ``?``, ``[abc]``, ``{a,b}``), e.g. ``delete_*``."""

    annotations: AnnotationMatch | None = None
    """Tool annotation hints, from the upstream's ``tools/list`` baseline."""

    input: dict[str, Condition] | None = None
    """JSONPath (``$.amount``, ``$.items[*].sku``, ``$.a[0]``) to operators on the call's arguments."""

    environment: str | None = None
    """Exact match against the top-level ``environment``."""

    metadata: dict[str, str | MetadataCondition] | None = None
    """Adapter metadata (sideband adapters only; never matches an MCP call)."""

    upstreams: list[str] | None = None
    """Names of the upstreams (under ``upstreams:``) this rule applies to."""

    agent: str | None = None
    """Glob on the authenticated agent's id (``listen.auth``), e.g. ``billing-*``; never matches a
    call from an unauthenticated agent."""

    any_: list[Match] | None = Field(default=None, alias="any")
    """Matches when at least one of these sub-matches holds."""

    all_: list[Match] | None = Field(default=None, alias="all")
    """Matches when every one of these sub-matches holds."""

    not_: Match | None = Field(default=None, alias="not")
    """Matches when this sub-match does not hold."""

    @field_validator("any_", "all_")
    @classmethod
    def _non_empty(cls, value: list[Match] | None) -> list[Match] | None:
        if value is not None and not value:
            raise ValueError("needs at least one sub-match")
        return value


class ApprovalRoute(ConfigModel):
    """Per-rule approval routing."""

    channel: str = "dashboard"
    """Channel name (or type, for unnamed channels) that receives the ticket."""

    timeout: DurationField | None = None
    """Overrides ``approval.timeout`` for this rule."""

    escalation_after: DurationField | None = None
    """Notify ``delegates`` when still pending after this long (must be shorter than the timeout)."""

    delegates: list[str] = Field(default_factory=list[str])
    """Channels notified at escalation (the primary channel again when empty)."""

    quorum: int | None = Field(default=None, ge=1)
    """Overrides ``approval.quorum`` for this rule: distinct approvers needed."""


class EvidenceItem(ConfigModel):
    """One required piece of evidence, bound to the tool that produced it and to the governed call.

    A plain string item (``requires: [order_data]``) is the same as ``{key: order_data}``.
    """

    key: str = Field(min_length=1)
    """The evidence key that must be present and unexpired in the session."""

    from_: str | None = Field(default=None, alias="from")
    """Tool whose call the evidence must come from: the tool of the call its ``call_id`` names (or,
    unbound, the tool the SDK named when marking it; proxy-produced evidence names its own call)."""

    match: dict[str, str] | None = None
    """Governed call argument path → the source call's argument path; the values must be equal
    (e.g. ``{"$.order_id": "$.order_id"}``). Needs evidence bound to a call the proxy forwarded."""

    match_data: dict[str, str] | None = None
    """Governed call argument path → path in the evidence data; the values must be equal."""

    verified: bool | None = None
    """Only accept evidence the proxy verified (overrides the requirement's ``verified`` for this item)."""

    @field_validator("match", "match_data")
    @classmethod
    def _paths(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        from helio_proxy.matching.jsonpath import parse_path  # the policy package imports these models

        for left, right in (value or {}).items():
            parse_path(left)
            parse_path(right)
        return value


class EvidenceRequirement(ConfigModel):
    """Evidence a call needs, or produces."""

    requires: list[str | EvidenceItem] = Field(default_factory=list[str | EvidenceItem])
    """Evidence the call needs: keys, or items binding a key to its source tool and the call's arguments."""

    produces: str | None = None
    """Record this evidence key automatically when a matching call succeeds upstream."""

    verified: bool = False
    """Only accept evidence the proxy verified (produced by it, or marked with the ``call_id`` of a
    successful call it forwarded); an item's own ``verified`` overrides it."""

    def items(self) -> tuple[EvidenceItem, ...]:
        """Every requirement as an :class:`EvidenceItem` (plain keys become ``{key: ...}``), first one per key."""
        out: dict[str, EvidenceItem] = {}
        for item in self.requires:
            value = EvidenceItem(key=item) if isinstance(item, str) else item
            out.setdefault(value.key, value)
        return tuple(out.values())

    ttl: DurationField = Duration("5m")
    """Lifetime of evidence recorded through ``produces``."""


class SpendLimit(ConfigModel):
    """Cumulative spend limit read from the call's arguments."""

    field: str
    """JSONPath of the amount in the arguments, e.g. ``$.amount``."""

    limit: Decimal = Field(gt=0)
    """Maximum total spend in the window."""

    currency: str = "USD"
    """Currency label (the operator's assertion; no conversion)."""

    window: DurationField = Duration("24h")
    """Sliding window."""

    key: LimitKey = "tool"
    """What the spend is counted per: ``tool``, ``session``, ``agent`` or ``sender_id``."""

    @field_validator("field")
    @classmethod
    def _field_is_a_path(cls, value: str) -> str:
        parse_path(value)
        return value


class Limits(ConfigModel):
    """Limits used by ``rate_limit`` and ``spend_limit`` rules."""

    max_calls: int | None = Field(default=None, gt=0)
    """Calls allowed per window (``rate_limit``)."""

    window: DurationField | None = None
    """Sliding window for ``max_calls`` (``rate_limit`` only: a ``spend_limit``'s window is ``max_spend.window``)."""

    key: LimitKey = "tool"
    """What calls are counted per: ``tool``, ``session``, ``agent`` or ``sender_id``."""

    max_spend: SpendLimit | None = None
    """Spend limit (``spend_limit``)."""


class Feedback(ConfigModel):
    """What a blocked agent is told."""

    message: str
    """The JSON-RPC error ``message``."""

    suggestion: str | None = None
    """A hint the agent can act on (``data.suggestion``)."""


class Rule(ConfigModel):
    """One policy rule. Rules are evaluated in order; the first match wins."""

    name: str | None = None
    """Rule name, reported in feedback and audit (``rule-<index>`` when absent)."""

    match: Match
    """Which calls the rule applies to."""

    action: Action | None = None
    """What happens to a matching call. Optional on a gate (a rule with ``evidence`` or ``requires``), where it means ``allow``."""

    approval: ApprovalRoute | None = None
    """Approval routing for ``require_approval``."""

    evidence: EvidenceRequirement | None = None
    """Evidence the call requires and/or produces."""

    requires: list[str] = Field(default_factory=list[str])
    """Tools that must have run earlier in the same session."""

    requires_success: bool = True
    """Prerequisites count only if they succeeded (no JSON-RPC error and no ``isError: true``)."""

    limits: Limits | None = None
    """Rate or spend limits for ``rate_limit`` / ``spend_limit``."""

    feedback: Feedback | None = None
    """Message and suggestion returned when the rule blocks a call."""

    data_plane: RuleDataPlane | None = None
    """Data-plane modes (``input_schema``, ``output_schema``, ``unknown_tools``, ``mode``) and extra
    ``scan`` rules for the calls this rule matches; they win over ``data_plane.tools``, the
    upstream's and the global modes (``docs/data-plane.md``). Ignored on ``policies.shadow`` rules."""

    @property
    def is_gate(self) -> bool:
        return bool(self.requires) or bool(self.evidence and self.evidence.requires)

    @property
    def effective_action(self) -> Action:
        return self.action or "allow"

    @model_validator(mode="after")
    def _matchers_compile(self) -> Rule:

        label = f"rule {self.name!r}" if self.name else "rule"

        def check(match: Match, where: str) -> None:
            try:
                if match.tool is not None:
                    compile_glob(match.tool)
            except ValueError as exc:
                raise ValueError(f"{label}: {where}.tool: glob {match.tool!r} {exc}") from None
            try:
                if match.agent is not None:
                    compile_glob(match.agent)
            except ValueError as exc:
                raise ValueError(f"{label}: {where}.agent: glob {match.agent!r} {exc}") from None
            for path, condition in (match.input or {}).items():
                try:
                    parse_path(path)
                except ValueError as exc:
                    raise ValueError(f"{label}: {where}.input: {exc}") from None
                try:
                    if condition.regex is not None:
                        check_regex(condition.regex)
                except ValueError as exc:
                    raise ValueError(
                        f"{label}: {where}.input[{path!r}].regex {condition.regex!r}: {exc}"
                    ) from None
            for key, subs in (("any", match.any_), ("all", match.all_)):
                for index, sub in enumerate(subs or []):
                    check(sub, f"{where}.{key}[{index}]")
            if match.not_ is not None:
                check(match.not_, f"{where}.not")

        check(self.match, "match")
        return self

    @model_validator(mode="after")
    def _action_needs(self) -> Rule:
        if self.action is None and not self.is_gate and not (self.evidence and self.evidence.produces):
            raise ValueError(
                "'action' is required (it may be omitted only on a rule with evidence or requires)"
            )
        if self.action == "rate_limit" and (
            self.limits is None or self.limits.max_calls is None or self.limits.window is None
        ):
            raise ValueError("action 'rate_limit' needs limits.max_calls and limits.window")
        if self.action == "spend_limit" and (self.limits is None or self.limits.max_spend is None):
            raise ValueError("action 'spend_limit' needs limits.max_spend")
        return self


class ToolRevalidation(ConfigModel):
    """Periodic ``tools/list`` re-checks for tool-definition drift."""

    enabled: bool = True
    """Send a proactive ``tools/list`` every ``interval``."""

    interval: DurationField = Duration("5m")
    """How often (at least 10s)."""

    max_advertised_ttl: DurationField | None = None
    """Clamp ``ttlMs`` on forwarded ``tools/list`` results to at most this (defaults to ``interval``)."""

    @field_validator("interval")
    @classmethod
    def _interval_floor(cls, value: Any) -> Any:
        from helio_proxy.config.durations import seconds

        if seconds(str(value)) < 10:
            raise ValueError("must be at least 10s")
        return value


class InstallMatch(ConfigModel):
    """What an install-time rule applies to (adapters only)."""

    name: str | None = None
    """Glob on the package name."""

    source: str | None = None
    """Exact package source, e.g. ``npm`` or ``pip``."""

    metadata: dict[str, str | MetadataCondition] | None = None
    """Adapter metadata conditions."""


class InstallRule(ConfigModel):
    """An install-time rule (sideband adapters only)."""

    name: str | None = None
    """Rule name, reported in decisions."""

    match: InstallMatch
    """Which packages the rule applies to."""

    action: Literal["deny_install", "allow"]
    """Decision for a matching package."""

    feedback: Feedback | None = None
    """Message and suggestion returned with a denial."""


class InstallPolicy(ConfigModel):
    """Install-time policy for adapters."""

    default: Literal["allow", "deny"] = "allow"
    """Decision when no install rule matches."""

    rules: list[InstallRule] = Field(default_factory=list[InstallRule])
    """Ordered install rules; the first match wins."""


class PoliciesConfig(ConfigModel):
    """Policy rules and switches. ``rules``, ``default``, ``flag_destructive``, ``on_tool_drift``,
    ``tool_revalidation``, ``dry_run`` and ``shadow`` hot-reload."""

    default: Literal["allow", "deny"] = "allow"
    """Decision when no rule matches."""

    flag_destructive: Literal["log", "require_approval"] | None = None
    """When no rule matched and the tool is destructive: flag the audit record, or require approval."""

    on_tool_drift: Literal["block", "require_approval", "log"] = "block"
    """What happens to calls of a tool whose definition changed since it was baselined."""

    tool_revalidation: ToolRevalidation = Field(default_factory=ToolRevalidation)
    """Periodic re-listing of tools for drift detection."""

    dry_run: bool = False
    """Run every call through the whole pipeline but forward nothing; answer with what would have happened."""

    hot_reload: bool = True
    """Watch the config file and apply policy changes without a restart (``--no-hot-reload`` wins)."""

    rules: list[Rule] = Field(default_factory=list[Rule])
    """Ordered rules; the first match wins."""

    shadow: list[Rule] = Field(default_factory=list[Rule])
    """Candidate rules evaluated on every call and only recorded, never enforced."""

    install: InstallPolicy | None = None
    """Install-time rules for adapters."""
