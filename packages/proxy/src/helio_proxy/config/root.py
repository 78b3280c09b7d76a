"""The whole ``helio.yaml`` document and the checks that span sections."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from helio_proxy.config.approval import ApprovalConfig, DashboardChannel
from helio_proxy.config.base import ConfigModel
from helio_proxy.config.budgets import BudgetConfig
from helio_proxy.config.data_plane import DataPlaneConfig
from helio_proxy.config.durations import seconds
from helio_proxy.config.policies import ApprovalRoute, Match, PoliciesConfig, Rule
from helio_proxy.config.sections import (
    AuditConfig,
    DashboardConfig,
    ListenConfig,
    SdkConfig,
    SessionConfig,
)
from helio_proxy.config.store import StoreConfig
from helio_proxy.config.telemetry import LogConfig, TelemetryConfig
from helio_proxy.config.upstream import UpstreamConfig

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _walk_matches(match: Match) -> Iterator[Match]:
    yield match
    for sub in (match.any_ or []) + (match.all_ or []):
        yield from _walk_matches(sub)
    if match.not_ is not None:
        yield from _walk_matches(match.not_)


class HelioConfig(ConfigModel):
    """A ``helio.yaml`` file (schema version 1). Top-level keys starting with ``x-`` are ignored (YAML anchors)."""

    version: Literal["1"]
    """Schema version; must be ``'1'``."""

    upstream: UpstreamConfig | None = None
    """The one upstream MCP server (use either this or ``upstreams``)."""

    upstreams: list[UpstreamConfig] | None = None
    """Several upstreams, each mounted at ``/mcp/<name>`` and ``/sse/<name>``."""

    listen: ListenConfig = Field(default_factory=ListenConfig)
    """Agent-facing listener."""

    environment: str | None = None
    """Deployment environment name, matched by ``match.environment``."""

    session: SessionConfig = Field(default_factory=SessionConfig)
    """Session identity."""

    policies: PoliciesConfig = Field(default_factory=PoliciesConfig)
    """Policy rules."""

    budgets: list[BudgetConfig] = Field(default_factory=list[BudgetConfig])
    """Cross-tool budgets."""

    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)
    """Approval workflow."""

    audit: AuditConfig = Field(default_factory=AuditConfig)
    """Audit trail."""

    store: StoreConfig = Field(default_factory=StoreConfig)
    """Shared governance database (default: SQLite at ``audit.path``)."""

    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    """Operator dashboard and REST API."""

    sdk: SdkConfig = Field(default_factory=SdkConfig)
    """SDK sideband."""

    data_plane: DataPlaneConfig = Field(default_factory=DataPlaneConfig)
    """Schema enforcement, unknown-tool refusal and content scanning of tool calls and results."""

    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    """Prometheus metrics and OpenTelemetry traces."""

    log: LogConfig = Field(default_factory=LogConfig)
    """The proxy's log lines (format and level)."""

    @model_validator(mode="before")
    @classmethod
    def _drop_extension_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}  # pyright: ignore[reportUnknownVariableType]
        return data

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return str(value) if value == 1 else value

    # -- derived views -----------------------------------------------------------------------

    @property
    def upstream_list(self) -> list[UpstreamConfig]:
        """Every configured upstream (one element for the single-upstream form)."""
        if self.upstreams is not None:
            return list(self.upstreams)
        assert self.upstream is not None
        return [self.upstream]

    def all_rules(self) -> Iterator[tuple[str, int, Rule]]:
        """Every enforced and shadow rule with its dotted list name and index."""
        for index, rule in enumerate(self.policies.rules):
            yield "policies.rules", index, rule
        for index, rule in enumerate(self.policies.shadow):
            yield "policies.shadow", index, rule

    def approval_routes(self) -> Iterator[tuple[str, ApprovalRoute]]:
        """Each place that can create an approval ticket, with the route it uses."""
        fallback = ApprovalRoute()
        for where, index, rule in self.all_rules():
            if rule.action == "require_approval":
                yield f"{where}[{index}]", rule.approval or fallback
        for index, budget in enumerate(self.budgets):
            if budget.on_exceed == "require_approval":
                yield f"budgets[{index}]", budget.approval or fallback
        if self.policies.flag_destructive == "require_approval":
            yield "policies.flag_destructive", fallback
        if self.policies.on_tool_drift == "require_approval":
            yield "policies.on_tool_drift", fallback

    def channel_types(self) -> dict[str, str]:
        """Channel reference → channel type. Named channels answer to their name only."""
        refs: dict[str, str] = {}
        for channel in self.approval.channels:
            refs[channel.name or channel.type] = channel.type
        refs.setdefault("dashboard", "dashboard")
        return refs

    def approver_count(self) -> int | None:
        """How many distinct principals can approve a ticket (``None``: unbounded, a Slack channel
        without an ``approvers`` allowlist)."""
        count = (1 if self.dashboard.api_secret or self.dashboard.allow_open_mode else 0) + sum(
            1 for operator in self.dashboard.operators if set(operator.roles) & {"approver", "admin"}
        )
        for channel in self.approval.channels:
            if channel.type == "slack":
                if not channel.approvers:
                    return None
                count += len(set(channel.approvers))
        return count

    # -- cross-field validation --------------------------------------------------------------

    @model_validator(mode="after")
    def _cross_checks(self) -> HelioConfig:
        self._check_upstreams()
        self._check_environment_and_keys()
        self._check_approvals()
        self._check_budgets()
        return self

    def _check_upstreams(self) -> None:
        if (self.upstream is None) == (self.upstreams is None):
            raise ValueError("set exactly one of 'upstream' or 'upstreams'")
        if self.upstreams is not None:
            if not self.upstreams:
                raise ValueError("'upstreams' needs at least one entry")
            names = [u.name for u in self.upstreams]
            if any(name is None for name in names):
                raise ValueError("every entry of 'upstreams' needs a 'name'")
            if len(set(names)) != len(names):
                raise ValueError("upstream names must be unique")
        elif self.upstream is not None and self.upstream.name is not None:
            raise ValueError("'upstream.name' is only used in the 'upstreams' list")
        known = {u.name for u in self.upstream_list}
        for where, index, rule in self.all_rules():
            for match in _walk_matches(rule.match):
                for name in match.upstreams or []:
                    if self.upstreams is None:
                        raise ValueError(f"{where}[{index}].match.upstreams needs the 'upstreams' list form")
                    if name not in known:
                        raise ValueError(f"{where}[{index}].match.upstreams: unknown upstream {name!r}")

    def _check_environment_and_keys(self) -> None:
        for where, index, rule in self.all_rules():
            for match in _walk_matches(rule.match):
                if match.environment is not None and self.environment is None:
                    raise ValueError(
                        f"{where}[{index}].match.environment needs the top-level 'environment' to be set"
                    )
            keys = [rule.limits.key] if rule.limits else []
            if rule.limits and rule.limits.max_spend:
                keys.append(rule.limits.max_spend.key)
            if "sender_id" in keys and not self.sdk.enabled:
                raise ValueError(f"{where}[{index}]: key 'sender_id' needs sdk.enabled: true")
        for index, budget in enumerate(self.budgets):
            if budget.key == "sender_id" and not self.sdk.enabled:
                raise ValueError(f"budgets[{index}]: key 'sender_id' needs sdk.enabled: true")

    def _check_approvals(self) -> None:
        refs = self.channel_types()
        needs_dashboard = False
        for where, route in self.approval_routes():
            if not self.dashboard.api_secret and not self.dashboard.operators:
                raise ValueError(
                    f"{where} requires approval, which needs dashboard.api_secret or dashboard.operators "
                    "(operators approve through the dashboard API)"
                )
            for name in [route.channel, *route.delegates]:
                if name not in refs:
                    raise ValueError(f"{where}: unknown approval channel {name!r} (known: {sorted(refs)})")
                needs_dashboard = needs_dashboard or refs[name] == "dashboard"
        has_webhook = any(c.type == "webhook" for c in self.approval.channels)
        if not self.dashboard.enabled and (needs_dashboard or has_webhook):
            raise ValueError(
                "approvals routed to the dashboard or a webhook need dashboard.enabled: true "
                "(approvers answer through the dashboard API)"
            )
        if (
            self.dashboard.enabled
            and not self.dashboard.api_secret
            and not self.dashboard.operators
            and not self.dashboard.allow_open_mode
        ):
            raise ValueError(
                "dashboard.api_secret is required while the dashboard is enabled "
                "(generate one with 'helio init', or set dashboard.allow_open_mode: true on loopback)"
            )
        if self.dashboard.allow_open_mode and self.dashboard.host not in LOOPBACK_HOSTS:
            raise ValueError("dashboard.allow_open_mode is only allowed with a loopback dashboard.host")
        names = [c.name for c in self.approval.channels if c.name]
        if len(set(names)) != len(names):
            raise ValueError("approval channel names must be unique")
        unnamed = [
            c.type for c in self.approval.channels if not c.name and not isinstance(c, DashboardChannel)
        ]
        if len(set(unnamed)) != len(unnamed):
            raise ValueError("two unnamed approval channels of one type are ambiguous; give them names")

    def _check_budgets(self) -> None:
        names = [b.name for b in self.budgets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"budget names must be unique (repeated: {', '.join(duplicates)})")

    # -- warnings ----------------------------------------------------------------------------

    def warnings(self) -> list[str]:
        """Legal but suspicious settings, printed by ``helio validate`` and at startup."""
        out: list[str] = []
        for where, index, rule in self.all_rules():
            if rule.is_gate and rule.action == "deny":
                out.append(
                    f"{where}[{index}] is a gate (evidence/requires) with action 'deny', so it can never pass; "
                    "use 'allow' (or omit action) to allow the call once its requirements are met"
                )
            if rule.action == "require_approval" and rule.approval is None:
                out.append(
                    f"{where}[{index}] requires approval without an 'approval' block; using the dashboard channel and approval.timeout"
                )
            route = rule.approval
            if (
                route
                and route.escalation_after
                and seconds(route.escalation_after) >= seconds(route.timeout or self.approval.timeout)
            ):
                out.append(
                    f"{where}[{index}].approval.escalation_after is not shorter than the timeout; it is ignored"
                )
        approvers = self.approver_count()
        for where, route in self.approval_routes():
            quorum = route.quorum or self.approval.quorum
            if approvers is not None and quorum > approvers:
                out.append(
                    f"{where} needs {quorum} distinct approvers but only {approvers} can approve "
                    "(dashboard.api_secret, operators with the approver or admin role, Slack approvers): "
                    "its tickets can never be approved"
                )
        if not self.policies.rules and self.policies.default == "allow":
            out.append("no policy rules and default 'allow': calls are audited but nothing is enforced")
        if self.sdk.enabled and self.sdk.host not in LOOPBACK_HOSTS:
            out.append(
                f"sdk.host {self.sdk.host!r} is not loopback: the sideband is reachable from the network"
            )
        if self.listen.host not in LOOPBACK_HOSTS:
            out.append(
                f"listen.host {self.listen.host!r} is not loopback: anything that reaches it can call tools"
            )
        retention = seconds(self.audit.retention)
        for budget in self.budgets:
            if budget.window != "session" and seconds(budget.window) > retention:
                out.append(
                    f"budget {budget.name!r} window {budget.window} is longer than audit.retention {self.audit.retention}"
                )
        return out
