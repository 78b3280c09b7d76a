"""Self-repair feedback: the ``message`` and ``data`` of a blocked call's JSON-RPC error.

``data`` always has ``blocked, reason, rule, rule_index, action, suggestion, retry_allowed``,
plus fields that depend on the reason:

==========================================  ==============================================
reason                                      extra fields
==========================================  ==============================================
``policy_denied``                           ``policy_reason`` (``rule_deny``/``default_deny``)
``tool_definition_drift``                   ``drifted_aspects``
``evidence_missing``, ``evidence_expired``,  ``missing_evidence``, ``expired_evidence``,
``dependency_missing``                      ``missing_dependencies``
``approval_unavailable``,                   none
``limits_unavailable``
==========================================  ==============================================

A rule's ``feedback.message``/``suggestion`` replace the generated ones for blocks the rule
itself caused (not for drift, which is about the tool rather than the rule).
"""

from __future__ import annotations

from typing import Any, Final

from helio_proxy.policy.decision import EVIDENCE_REASONS, Allow, Decision, Deny, DryRun

SUGGESTIONS: Final = {
    "policy_denied": "Do not retry this call. Use another tool or ask an operator to change the policy.",
    "tool_definition_drift": (
        "Do not retry. The tool's definition changed since it was reviewed; "
        "an operator must accept the new definition first."
    ),
    "evidence_missing": "Gather the missing evidence (or call the prerequisite tools first), then retry.",
    "evidence_expired": "Refresh the expired evidence, then retry.",
    "dependency_missing": "Call the prerequisite tools first (successfully), then retry.",
    "approval_unavailable": (
        "This call needs human approval, which this proxy cannot collect yet; ask an operator."
    ),
    "limits_unavailable": (
        "This call is governed by a rate or spend limit that this proxy cannot enforce yet; ask an operator."
    ),
}


def _message(decision: Deny, tool: str) -> str:
    rule = f"rule {decision.rule!r}" if decision.rule else "the default policy"
    match decision.reason:
        case "policy_denied":
            if decision.rule is None:
                return f"Tool {tool!r} is blocked: no policy rule allows it and the default is deny."
            return f"Tool {tool!r} is blocked by policy {rule}."
        case "tool_definition_drift":
            aspects = ", ".join(decision.drifted_aspects)
            return f"Tool {tool!r} is blocked: its definition changed since it was baselined ({aspects})."
        case "evidence_missing" | "evidence_expired" | "dependency_missing":
            parts: list[str] = []
            if decision.missing_evidence:
                parts.append("missing evidence: " + ", ".join(decision.missing_evidence))
            if decision.expired_evidence:
                parts.append("expired evidence: " + ", ".join(decision.expired_evidence))
            if decision.missing_dependencies:
                parts.append("prerequisite tools not called: " + ", ".join(decision.missing_dependencies))
            return f"Tool {tool!r} is blocked by {rule} ({'; '.join(parts)})."
        case "approval_unavailable":
            return f"Tool {tool!r} requires human approval ({rule}), and no approval channel is available."
        case "limits_unavailable":
            return f"Tool {tool!r} is under a limit ({rule}) that cannot be enforced, so it is blocked."
        case _:
            return f"Tool {tool!r} is blocked ({decision.reason})."


def block_feedback(decision: Deny, tool: str) -> tuple[str, dict[str, Any]]:
    """The JSON-RPC error ``message`` and ``data`` for a blocked call."""
    own = decision.feedback if decision.reason != "tool_definition_drift" else None
    message = own.message if own else _message(decision, tool)
    suggestion = own.suggestion if own and own.suggestion else SUGGESTIONS.get(decision.reason, "")
    data: dict[str, Any] = {
        "blocked": True,
        "reason": decision.reason,
        "rule": decision.rule,
        "rule_index": decision.rule_index,
        "action": decision.blocked_action,
        "suggestion": suggestion,
        "retry_allowed": decision.retry_allowed,
    }
    if decision.reason == "policy_denied":
        data["policy_reason"] = decision.policy_reason
    elif decision.reason == "tool_definition_drift":
        data["drifted_aspects"] = list(decision.drifted_aspects)
    elif decision.reason in EVIDENCE_REASONS:
        data["missing_evidence"] = list(decision.missing_evidence)
        data["expired_evidence"] = list(decision.expired_evidence)
        data["missing_dependencies"] = list(decision.missing_dependencies)
    return message, data


def simulation_report(decision: DryRun, enforced: Decision) -> dict[str, Any]:
    """The JSON a dry-run answers with (as ``content[0].text``).

    ``enforced`` is what the call would finally have met once approvals and limits had their
    say: the decision itself, an ``Allow``, or a ``Deny``.
    """
    would = decision.would
    return {
        "dry_run": True,
        "would_forward": isinstance(enforced, Allow),
        "policy_decision": decision.policy_decision,
        "matched_rule": would.rule,
        "evidence_satisfied": not (isinstance(would, Deny) and would.reason in EVIDENCE_REASONS),
        "limits_ok": not (isinstance(enforced, Deny) and enforced.reason == "limits_unavailable"),
    }
