"""The gate check: does a session meet a call's evidence and prerequisite requirements?

Pure: it reads a :class:`SessionSnapshot` taken before the decision, the governed call's
arguments and a time, and returns a :class:`GateResult` value. Every unmet item is reported at
once, so an agent can repair them all before retrying:

* ``missing_evidence``: required keys with no live entry (and, under ``verified: true``, keys
  whose live entry is not verified; those are also listed in ``unverified_evidence``);
* ``mismatched_evidence``: live entries that fail one of the item's bindings (``from``: produced
  by another tool; ``match``/``match_data``: about other arguments than the governed call's);
* ``expired_evidence``: required keys that were marked but have expired;
* ``missing_dependencies``: rule ``requires`` tools and SDK-declared prerequisites of this tool
  that have not run (successfully, when ``requires_success``; declared ones always need success).

The reason is ``evidence_missing`` if anything is missing, else ``evidence_mismatch``, else
``evidence_expired``, else ``dependency_missing``. When the session's state could not be read
(store-backed session state, database unreachable) nothing can be checked: the result is
:data:`STORE_UNAVAILABLE` (``store_unavailable``, retry allowed), never a pass. A result with ``isError: true`` is not a
success, so it never unlocks a ``requires_success`` prerequisite nor verifies evidence.

A passed check of a rule gate lists what satisfied it (``satisfied``), for the audit record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from helio_proxy.config.policies import EvidenceItem, Rule
from helio_proxy.evidence.model import EvidenceEntry, SessionSnapshot

GateReason = Literal[
    "evidence_missing",
    "evidence_mismatch",
    "evidence_expired",
    "dependency_missing",
    "policy_denied",
    "store_unavailable",
]


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class GateRequirements:
    """What one call needs from its session."""

    tool_name: str
    """The called tool (its SDK-declared prerequisites apply too)."""
    evidence: tuple[EvidenceItem, ...] = ()
    """Evidence items from the matched rule's ``evidence.requires`` (plain keys as items)."""
    verified: bool = False
    """The rule's ``evidence.verified``: only proxy-verified evidence counts (items may override)."""
    requires: tuple[str, ...] = ()
    """Tools from the matched rule's ``requires``."""
    requires_success: bool = True
    """The rule's ``requires_success``."""
    producers: Mapping[str, str] = field(default_factory=dict[str, str])
    """Evidence key → tool that produces it, for suggestions (see ``evidence_producers``)."""
    arguments: Any = None
    """The governed call's arguments (bindings compare them with the evidence's source)."""

    @classmethod
    def for_call(
        cls,
        tool_name: str,
        rule: Rule | None,
        producers: Mapping[str, str] | None = None,
        arguments: Any = None,
    ) -> GateRequirements:
        """The requirements of a call of ``tool_name`` whose first matching rule is ``rule``."""
        producers = producers or {}
        if rule is None:
            return cls(tool_name, producers=producers, arguments=arguments)
        evidence = rule.evidence
        return cls(
            tool_name,
            evidence=evidence.items() if evidence else (),
            verified=bool(evidence and evidence.verified),
            requires=_unique(rule.requires),
            requires_success=rule.requires_success,
            producers=producers,
            arguments=arguments,
        )

    @property
    def from_rule(self) -> bool:
        """Whether the matched rule itself is a gate (needs a resolved session to pass)."""
        return bool(self.evidence or self.requires)

    def source_of(self, item: EvidenceItem) -> str | None:
        """The tool that must produce ``item``: its ``from``, else the rule that produces the key."""
        return item.from_ or self.producers.get(item.key)


@dataclass(frozen=True, slots=True)
class GateResult:
    """The outcome of :func:`check_gates`; ``passed`` when nothing is unmet."""

    missing_evidence: tuple[str, ...] = ()
    expired_evidence: tuple[str, ...] = ()
    unverified_evidence: tuple[str, ...] = ()
    """Subset of ``missing_evidence``: present and live, but not verified as the rule demands."""
    mismatched_evidence: tuple[dict[str, Any], ...] = ()
    """Live evidence failing a binding: ``{key, binding, ...}`` (``binding``: ``from``, ``match``,
    ``match_data`` or ``unbound``), with what was expected and what was found."""
    missing_dependencies: tuple[str, ...] = ()
    session_unresolved: bool = False
    """The rule is a gate and the call has no session id, so nothing can satisfy it."""
    store_unavailable: bool = False
    """The session's state could not be read (the store is unreachable): fail closed, retry later."""
    suggestion: str = ""
    steps: tuple[str, ...] = ()
    """The suggestion as ordered steps (run the source tool, mark its result, retry)."""
    satisfied: tuple[dict[str, Any], ...] = ()
    """What met each requirement of a passed (or partly met) gate: evidence items (key, source
    tool, call id, verified, bound values) and prerequisite tools."""

    @property
    def passed(self) -> bool:
        return not (
            self.missing_evidence
            or self.expired_evidence
            or self.mismatched_evidence
            or self.missing_dependencies
            or self.session_unresolved
            or self.store_unavailable
        )

    @property
    def reason(self) -> GateReason | None:
        if self.session_unresolved:
            return "policy_denied"
        if self.store_unavailable:
            return "store_unavailable"
        if self.missing_evidence:
            return "evidence_missing"
        if self.mismatched_evidence:
            return "evidence_mismatch"
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
        if self.store_unavailable:
            return (
                f"Tool {tool_name!r} is blocked for now: the store that holds the session's evidence "
                "and call history is unreachable."
            )
        parts: list[str] = []
        if self.missing_evidence:
            parts.append("missing evidence: " + ", ".join(self.missing_evidence))
        for mismatch in self.mismatched_evidence:
            parts.append(_mismatch_text(mismatch))
        if self.expired_evidence:
            parts.append("expired evidence: " + ", ".join(self.expired_evidence))
        if self.missing_dependencies:
            parts.append("prerequisite tools not called: " + ", ".join(self.missing_dependencies))
        text = f"Tool {tool_name!r} is blocked ({'; '.join(parts)})."
        if self.steps:
            text += " To proceed: " + " ".join(f"{n}. {step}" for n, step in enumerate(self.steps, 1))
        return text

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
        if self.store_unavailable:
            return data
        data["missing_evidence"] = list(self.missing_evidence)
        data["expired_evidence"] = list(self.expired_evidence)
        data["unverified_evidence"] = list(self.unverified_evidence)
        data["missing_dependencies"] = list(self.missing_dependencies)
        if self.mismatched_evidence:
            data["mismatched_evidence"] = [dict(m) for m in self.mismatched_evidence]
        return data

    def audit_fields(self) -> dict[str, Any]:
        """``evidence_chain.gate`` of the call's audit record, allowed or blocked."""
        data: dict[str, Any] = self.feedback_fields() if not self.passed else {"passed": True}
        data["satisfied"] = [dict(item) for item in self.satisfied]
        return data


def _mismatch_text(mismatch: Mapping[str, Any]) -> str:
    key = mismatch["key"]
    match mismatch["binding"]:
        case "from":
            return f"evidence {key!r} comes from {mismatch['found']}, not {mismatch['expected']}"
        case "unbound":
            return f"evidence {key!r} is not bound to a call of {mismatch['expected']} the proxy forwarded"
        case _:
            return (
                f"evidence {key!r} is about {mismatch['source_path']}={mismatch['found']!r}, but this call "
                f"has {mismatch['path']}={mismatch['expected']!r}"
            )


PASSED: Final = GateResult()

STORE_UNAVAILABLE: Final = GateResult(
    store_unavailable=True,
    suggestion=(
        "Retry in a few seconds: the proxy's shared store is unreachable, so this session's "
        "evidence and prerequisites cannot be checked right now."
    ),
)
"""The gate check of a session whose state could not be read."""

CALL_ID_META_KEY: Final = "io.gethelio/call-id"
"""The ``_meta`` key of an allowed ``tools/call`` result that holds the proxy's id for the call."""

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
    mismatched: list[dict[str, Any]] = []
    satisfied: list[dict[str, Any]] = []
    for item in requirements.evidence:
        key = item.key
        entry = state.evidence.get(key)
        if entry is not None and entry.live(now):
            verified = item.verified if item.verified is not None else requirements.verified
            if verified and not entry.verified:
                missing.append(key)
                unverified.append(key)
                continue
            problem = _binding_problem(item, entry, requirements.arguments)
            if problem is not None:
                mismatched.append(problem)
            else:
                satisfied.append(_evidence_met(item, entry, requirements.arguments))
        elif entry is not None or key in state.expired:
            expired.append(key)
        else:
            missing.append(key)
    done = state.succeeded_tools if requirements.requires_success else state.called_tools
    unmet: list[str] = []
    for tool in requirements.requires:
        if tool in done:
            satisfied.append(_prerequisite_met(tool, state, requirements.requires_success, declared=False))
        else:
            unmet.append(tool)
    for tool in state.dependencies.get(requirements.tool_name, ()):
        if tool in state.succeeded_tools:
            satisfied.append(_prerequisite_met(tool, state, True, declared=True))
        else:
            unmet.append(tool)
    result = GateResult(
        missing_evidence=tuple(missing),
        expired_evidence=tuple(expired),
        unverified_evidence=tuple(unverified),
        mismatched_evidence=tuple(mismatched),
        missing_dependencies=_unique(unmet),
        satisfied=tuple(satisfied),
    )
    if result.passed:
        return result if satisfied else PASSED
    return _with_suggestion(result, requirements, state)


def _values(path: str, document: Any) -> list[Any]:
    from helio_proxy.matching.jsonpath import parse_path  # policy imports this module

    return parse_path(path).resolve(document) if document is not None else []


def _short(path: str) -> str:
    return path[2:] if path.startswith("$.") else path


def _source_tool(entry: EvidenceEntry) -> str | None:
    """The tool the evidence comes from: its bound call's, else (no call id) what the SDK said."""
    if entry.bound:
        return entry.source_tool
    return entry.tool_name if entry.call_id is None else None


def _binding_problem(item: EvidenceItem, entry: EvidenceEntry, arguments: Any) -> dict[str, Any] | None:
    key = item.key
    if item.from_ is not None:
        found = _source_tool(entry)
        if found is None:
            return {"key": key, "binding": "unbound", "expected": item.from_, "call_id": entry.call_id}
        if found != item.from_:
            return {"key": key, "binding": "from", "expected": item.from_, "found": found}
    if item.match and not entry.bound:
        return {"key": key, "binding": "unbound", "expected": item.from_ or entry.tool_name}
    for binding, pairs, document in (
        ("match", item.match, entry.source_arguments),
        ("match_data", item.match_data, entry.data),
    ):
        for path, source_path in (pairs or {}).items():
            expected = _values(path, arguments)
            found = _values(source_path, document)
            if not expected or expected != found:
                return {
                    "key": key,
                    "binding": binding,
                    "path": path,
                    "source_path": source_path,
                    "expected": expected[0] if len(expected) == 1 else (expected or None),
                    "found": found[0] if len(found) == 1 else (found or None),
                }
    return None


def _evidence_met(item: EvidenceItem, entry: EvidenceEntry, arguments: Any) -> dict[str, Any]:
    met: dict[str, Any] = {
        "evidence": item.key,
        "source_tool": _source_tool(entry),
        "call_id": entry.call_id,
        "verified": entry.verified,
        "produced": entry.produced,
    }
    bound = {path: _values(path, arguments) for path in {**(item.match or {}), **(item.match_data or {})}}
    if bound:
        met["bound"] = {path: values[0] if len(values) == 1 else values for path, values in bound.items()}
    return met


def _prerequisite_met(tool: str, state: SessionSnapshot, success: bool, *, declared: bool) -> dict[str, Any]:
    met: dict[str, Any] = {"tool": tool, "call_id": state.last_call_id(tool, succeeded=success)}
    if declared:
        met["declared"] = True
    return met


def _args_hint(item: EvidenceItem, arguments: Any) -> str:
    pairs: list[str] = []
    for path, source_path in (item.match or {}).items():
        values = _values(path, arguments)
        if len(values) == 1:
            pairs.append(f"{_short(source_path)}={values[0]!r}")
    return f" with {', '.join(pairs)}" if pairs else ""


def _repair(item: EvidenceItem, requirements: GateRequirements, fallback: str | None) -> list[str]:
    """The steps that produce ``item``: run its source tool, then mark its result with the call id."""
    key = item.key
    source = requirements.source_of(item) or fallback
    hint = _args_hint(item, requirements.arguments)
    produced_by = requirements.producers.get(key)
    if source is not None and produced_by == source:
        return [f"Call {source}{hint}; the proxy records its successful result as evidence {key!r}."]
    if source is None:
        return [f"Mark evidence {key!r} through the SDK: ctx.mark_evidence(tool_name, {key!r}, data)."]
    return [
        f"Call {source}{hint} and keep its result (it must succeed).",
        f"Mark that result as evidence {key!r} with the call_id of that {source} call: ctx.mark_evidence({source!r}, "
        f"{key!r}, data, call_id=ctx.call_id_of(result)) (the id is in result._meta"
        f"[{CALL_ID_META_KEY!r}]).",
    ]


def _with_suggestion(
    result: GateResult, requirements: GateRequirements, state: SessionSnapshot
) -> GateResult:
    items = {item.key: item for item in requirements.evidence}
    steps: list[str] = []
    if result.missing_dependencies:
        must_succeed = requirements.requires_success or requirements.tool_name in state.dependencies
        tail = " (successfully)" if must_succeed else ""
        steps.append(f"Call {', '.join(result.missing_dependencies)} first{tail}.")
    for key in result.missing_evidence:
        entry = state.evidence.get(key)
        steps.extend(_repair(items[key], requirements, entry.tool_name if entry else None))
    for mismatch in result.mismatched_evidence:
        steps.extend(_repair(items[mismatch["key"]], requirements, None))
    for key in result.expired_evidence:
        entry = state.evidence.get(key)
        tool = state.expired.get(key) or (entry.tool_name if entry else None)
        steps.extend(_repair(items[key], requirements, tool))
    steps.append(f"Retry {requirements.tool_name} with the same arguments.")
    steps = list(dict.fromkeys(steps))
    return replace(
        result,
        steps=tuple(steps),
        suggestion=" ".join(f"{n}. {step}" for n, step in enumerate(steps, 1)),
    )
