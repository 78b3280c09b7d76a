"""The gate check: does a session meet a call's evidence and prerequisite requirements?

Pure: it reads a :class:`SessionSnapshot` taken before the decision and a time, and returns a
:class:`GateResult` value. Every unmet item is reported at once, so an agent can repair them all
before retrying:

* ``missing_evidence``: required keys with no live entry (and, under ``verified: true``, keys
  whose live entry is not verified; those are also listed in ``unverified_evidence``);
* ``expired_evidence``: required keys that were marked but have expired;
* ``missing_dependencies``: rule ``requires`` tools and SDK-declared prerequisites of this tool
  that have not run (successfully, when ``requires_success``; declared ones always need success).

The reason is ``evidence_missing`` if anything is missing, else ``evidence_expired`` if anything
expired, else ``dependency_missing``. A result with ``isError: true`` is not a success, so it
never unlocks a ``requires_success`` prerequisite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from helio_proxy.config.policies import Rule
from helio_proxy.evidence.model import SessionSnapshot

GateReason = Literal["evidence_missing", "evidence_expired", "dependency_missing", "policy_denied"]


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class GateRequirements:
    """What one call needs from its session."""

    tool_name: str
    """The called tool (its SDK-declared prerequisites apply too)."""
    evidence: tuple[str, ...] = ()
    """Evidence keys from the matched rule's ``evidence.requires``."""
    verified: bool = False
    """The rule's ``evidence.verified``: only proxy-verified evidence counts."""
    requires: tuple[str, ...] = ()
    """Tools from the matched rule's ``requires``."""
    requires_success: bool = True
    """The rule's ``requires_success``."""
    producers: Mapping[str, str] = field(default_factory=dict[str, str])
    """Evidence key → tool that produces it, for suggestions (see ``evidence_producers``)."""

    @classmethod
    def for_call(
        cls, tool_name: str, rule: Rule | None, producers: Mapping[str, str] | None = None
    ) -> GateRequirements:
        """The requirements of a call of ``tool_name`` whose first matching rule is ``rule``."""
        producers = producers or {}
        if rule is None:
            return cls(tool_name, producers=producers)
        evidence = rule.evidence
        return cls(
            tool_name,
            evidence=_unique(evidence.requires) if evidence else (),
            verified=bool(evidence and evidence.verified),
            requires=_unique(rule.requires),
            requires_success=rule.requires_success,
            producers=producers,
        )

    @property
    def from_rule(self) -> bool:
        """Whether the matched rule itself is a gate (needs a resolved session to pass)."""
        return bool(self.evidence or self.requires)


@dataclass(frozen=True, slots=True)
class GateResult:
    """The outcome of :func:`check_gates`; ``passed`` when nothing is unmet."""

    missing_evidence: tuple[str, ...] = ()
    expired_evidence: tuple[str, ...] = ()
    unverified_evidence: tuple[str, ...] = ()
    """Subset of ``missing_evidence``: present and live, but not verified as the rule demands."""
    missing_dependencies: tuple[str, ...] = ()
    session_unresolved: bool = False
    """The rule is a gate and the call has no session id, so nothing can satisfy it."""
    suggestion: str = ""

    @property
    def passed(self) -> bool:
        return not (
            self.missing_evidence
            or self.expired_evidence
            or self.missing_dependencies
            or self.session_unresolved
        )

    @property
    def reason(self) -> GateReason | None:
        if self.session_unresolved:
            return "policy_denied"
        if self.missing_evidence:
            return "evidence_missing"
        if self.expired_evidence:
            return "evidence_expired"
        if self.missing_dependencies:
            return "dependency_missing"
        return None

    @property
    def retry_allowed(self) -> bool:
        """The agent can fix what is unmet and retry (not so without a session id)."""
        return not self.session_unresolved

    def message(self, tool_name: str) -> str:
        """A generated JSON-RPC error message (a rule's ``feedback.message`` replaces it)."""
        if self.session_unresolved:
            return (
                f"Tool {tool_name!r} is blocked: it needs a session id to check evidence and prerequisites."
            )
        parts: list[str] = []
        if self.missing_evidence:
            parts.append("missing evidence: " + ", ".join(self.missing_evidence))
        if self.expired_evidence:
            parts.append("expired evidence: " + ", ".join(self.expired_evidence))
        if self.missing_dependencies:
            parts.append("prerequisite tools not called: " + ", ".join(self.missing_dependencies))
        return f"Tool {tool_name!r} is blocked ({'; '.join(parts)})."

    def feedback_fields(self) -> dict[str, Any]:
        """The gate's part of the block response ``data`` (the gateway adds rule, action...)."""
        data: dict[str, Any] = {
            "reason": self.reason,
            "suggestion": self.suggestion,
            "retry_allowed": self.retry_allowed,
        }
        if self.session_unresolved:
            data["policy_reason"] = "session_unresolved"
            return data
        data["missing_evidence"] = list(self.missing_evidence)
        data["expired_evidence"] = list(self.expired_evidence)
        data["unverified_evidence"] = list(self.unverified_evidence)
        data["missing_dependencies"] = list(self.missing_dependencies)
        return data


PASSED: Final = GateResult()

UNRESOLVED_SUGGESTION: Final = (
    "Send the session id with every MCP request (the x-helio-session-id header by default: the "
    "SDK's HelioContext.headers), the same id the SDK uses on the sideband, then retry."
)


def check_gates(requirements: GateRequirements, state: SessionSnapshot | None, now: int) -> GateResult:
    """Check ``requirements`` against ``state`` at ``now`` (epoch ms).

    ``state`` is ``None`` when the call's session is unresolved: a rule gate then fails with
    ``policy_denied`` / ``policy_reason: session_unresolved`` (under either ``on_unresolved``
    mode: evidence is never pooled), and a call with no rule gate passes (an unresolved call has
    no SDK-declared prerequisites).
    """
    if state is None:
        if requirements.from_rule:
            return GateResult(session_unresolved=True, suggestion=UNRESOLVED_SUGGESTION)
        return PASSED
    missing: list[str] = []
    unverified: list[str] = []
    expired: list[str] = []
    for key in requirements.evidence:
        entry = state.evidence.get(key)
        if entry is not None and entry.live(now):
            if requirements.verified and not entry.verified:
                missing.append(key)
                unverified.append(key)
        elif entry is not None or key in state.expired:
            expired.append(key)
        else:
            missing.append(key)
    done = state.succeeded_tools if requirements.requires_success else state.called_tools
    unmet = [tool for tool in requirements.requires if tool not in done]
    declared = state.dependencies.get(requirements.tool_name, ())
    unmet.extend(tool for tool in declared if tool not in state.succeeded_tools)
    result = GateResult(
        missing_evidence=tuple(missing),
        expired_evidence=tuple(expired),
        unverified_evidence=tuple(unverified),
        missing_dependencies=_unique(unmet),
    )
    if result.passed:
        return PASSED
    return _with_suggestion(result, requirements, state)


def _with_suggestion(
    result: GateResult, requirements: GateRequirements, state: SessionSnapshot
) -> GateResult:
    producers = requirements.producers
    steps: list[str] = []
    for key in result.missing_evidence:
        if key in result.unverified_evidence:
            tool = state.evidence[key].tool_name
            steps.append(
                f"mark evidence {key!r} with the call_id of a successful {tool} call "
                "(listed under completed_tools in the session state)"
            )
        elif key in producers:
            steps.append(f"call {producers[key]} to produce evidence {key!r}")
        else:
            steps.append(f"mark evidence {key!r} through the SDK (mark_evidence)")
    for key in result.expired_evidence:
        entry = state.evidence.get(key)
        tool = state.expired.get(key) or (entry.tool_name if entry else None) or producers.get(key)
        steps.append(
            f"call {tool} again to refresh expired evidence {key!r}"
            if tool
            else f"mark expired evidence {key!r} again"
        )
    if result.missing_dependencies:
        must_succeed = requirements.requires_success or requirements.tool_name in state.dependencies
        tail = " (successfully)" if must_succeed else ""
        steps.append(f"call {', '.join(result.missing_dependencies)} first{tail}")
    text = "; ".join(steps) + ", then retry."
    return GateResult(
        missing_evidence=result.missing_evidence,
        expired_evidence=result.expired_evidence,
        unverified_evidence=result.unverified_evidence,
        missing_dependencies=result.missing_dependencies,
        suggestion=text[0].upper() + text[1:],
    )
