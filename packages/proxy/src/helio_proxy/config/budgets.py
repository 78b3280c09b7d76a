"""``budgets``: named cross-tool spending pots."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from helio_proxy.config.base import ConfigModel
from helio_proxy.config.durations import Duration, DurationField, parse_duration
from helio_proxy.config.policies import ApprovalRoute, Condition
from helio_proxy.matching.glob import compile_glob
from helio_proxy.matching.jsonpath import parse_path


class ContributorMatch(ConfigModel):
    """Which calls feed a budget."""

    tool: str
    """Glob on the tool name."""

    input: dict[str, Condition] | None = None
    """Argument conditions, as in rule matches."""

    upstreams: list[str] | None = None
    """Upstream names this contributor applies to."""


class Contributor(ConfigModel):
    """A tool that spends from the budget, and where its amount is."""

    match: ContributorMatch
    """Which calls count."""

    field: str
    """JSONPath of the amount in the arguments."""

    @model_validator(mode="after")
    def _paths_compile(self) -> Contributor:

        try:
            compile_glob(self.match.tool)
        except ValueError as exc:
            raise ValueError(f"match.tool: glob {self.match.tool!r} {exc}") from None
        for path in self.match.input or {}:
            parse_path(path)
        parse_path(self.field)
        return self


class BudgetConfig(ConfigModel):
    """A cross-tool budget. One call charges every matching budget, all or nothing."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """Unique name (letters, digits, ``_``, ``-``; up to 64)."""

    limit: Decimal = Field(gt=0)
    """Total allowed in one window."""

    currency: str = "USD"
    """Currency label (the operator's assertion; no conversion)."""

    window: str = "24h"
    """A duration (``24h``, ``30d``) or ``session`` (the pot lives as long as the session)."""

    key: Literal["global", "session", "agent", "sender_id"] = "global"
    """Whose pot: one shared pot, one per session, per agent, or per adapter sender."""

    on_exceed: Literal["deny", "require_approval"] = "deny"
    """What happens to a call that would overspend."""

    approval: ApprovalRoute | None = None
    """Approval routing when ``on_exceed: require_approval``."""

    idle_ttl: DurationField = Duration("24h")
    """For ``window: session``: forget a session's pot after this long without activity."""

    contributors: list[Contributor] = Field(min_length=1)
    """Calls that spend from this budget; the first matching contributor gives the amount."""

    @field_validator("window")
    @classmethod
    def _window_shape(cls, value: str) -> str:
        if value == "session":
            return value
        return parse_duration(value)

    @model_validator(mode="after")
    def _approval_only_when_asked(self) -> BudgetConfig:
        if self.approval is not None and self.on_exceed != "require_approval":
            raise ValueError("'approval' is only used with on_exceed: require_approval")
        return self
