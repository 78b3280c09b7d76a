"""Self-repair feedback: the ``message`` and ``data`` of a blocked call's JSON-RPC error.

``data`` always has ``blocked, reason, rule, rule_index, action, suggestion, retry_allowed``,
plus fields that depend on the reason:

==========================================  ==============================================
reason                                      extra fields
==========================================  ==============================================
``policy_denied``                           ``policy_reason`` (``rule_deny``/``default_deny``)
``tool_definition_drift``                   ``drifted_aspects``
``evidence_missing``, ``evidence_expired``,  ``missing_evidence``, ``expired_evidence``,
``dependency_missing``                      ``unverified_evidence``, ``missing_dependencies``
``policy_denied`` (no session id, gated)    ``policy_reason: session_unresolved``
``approval_unavailable``,                   none
``limits_unavailable``
``baselines_unavailable``,                  none; ``retry_allowed: true`` (temporary: the upstream's
``store_unavailable``,                      tools not listed yet / the shared store unreachable, for
``audit_unavailable``                       limits or for a store-backed session's gate check / the
                                            audit store unreachable under strict durability)
``evidence_mismatch``                       ``mismatched_evidence`` (+ the evidence lists above)
``rate_limited``                            ``current_calls``, ``max_calls``, ``window_seconds``, ``reset_at``
``spend_limited``                           ``current_spend``, ``max_spend``, ``attempted_amount``, ``currency``,
                                            ``window_seconds``, ``reset_at``; or ``invalid_amount``, ``field``
``budget_exceeded``                         ``budgets`` (one entry per breached budget)
``session_unresolved``                      ``limit_kind``, ``limit``
``approval_denied``                         ``ticket_id``, ``denied_by``, ``denial_reason``
``approval_timeout``                        ``ticket_id``, ``timeout_seconds``
``approval_capacity_exhausted``             ``ticket_id`` (null), ``max_pending``; ``retry_allowed: true``
``client_disconnected``,                    ``ticket_id``
``shutdown_cancelled``
``request_cancelled``                       none (the client sent ``notifications/cancelled``)
``kill_switch``                             ``kill_switch_scope``, ``kill_switch_reason``, ``engaged_by``,
                                            ``engaged_at`` (see :mod:`helio_proxy.killswitch`)
==========================================  ==============================================

Limit blocks carry their fields in ``Deny.details`` (built by :mod:`helio_proxy.limits.blocks`).

Gate blocks take their fields, message and suggestion from the evidence module's
:class:`~helio_proxy.evidence.GateResult`. A rule's ``feedback.message``/``suggestion`` replace
the generated ones for blocks the rule itself caused (not for drift, which is about the tool
rather than the rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from helio_proxy.policy.decision import Allow, Decision, Deny, DryRun

BLOCK_REASONS: Final = (
    "policy_denied",
    "tool_definition_drift",
    "evidence_missing",
    "evidence_expired",
    "evidence_mismatch",
    "dependency_missing",
    "baselines_unavailable",
    "store_unavailable",
    "audit_unavailable",
    "approval_unavailable",
    "limits_unavailable",
    "rate_limited",
    "spend_limited",
    "budget_exceeded",
    "session_unresolved",
    "approval_denied",
    "approval_timeout",
    "approval_capacity_exhausted",
    "client_disconnected",
    "shutdown_cancelled",
    "request_cancelled",
    "kill_switch",
)
"""Every ``reason`` a governance block can carry in this version."""

SUGGESTIONS: Final = {
    "policy_denied": "Do not retry this call. Use another tool or ask an operator to change the policy.",
    "tool_definition_drift": (
        "Do not retry. The tool's definition changed since it was reviewed; "
        "an operator must accept the new definition first."
    ),
    "approval_unavailable": (
        "This call needs human approval, which this proxy cannot collect yet; ask an operator."
    ),
    "limits_unavailable": (
        "This call is governed by a rate or spend limit that this proxy cannot enforce right now; ask an operator."
    ),
    "baselines_unavailable": (
        "Retry in a few seconds: the proxy has not learned this tool's annotations from the upstream yet "
        "(it may be starting or unreachable), and the policy depends on them."
    ),
    "store_unavailable": (
        "Retry in a few seconds: the proxy's shared store is unreachable, so the limits of this call "
        "cannot be checked right now."
    ),
    "audit_unavailable": (
        "Retry in a few seconds: the proxy records every call before answering (strict audit), and "
        "its audit store cannot be written right now (an operator sees it on /healthz), so the call "
        "was not forwarded."
    ),
    "rate_limited": "Wait until reset_at, then retry the call.",
    "spend_limited": "Wait until reset_at for room in the spend window, or retry with a smaller amount.",
    "budget_exceeded": (
        "The budget has no room for this amount; wait until reset_at, use a smaller amount, "
        "or ask an operator to raise the budget."
    ),
    "session_unresolved": (
        "Send a session id with every call (the x-helio-session-id header; the SDK's HelioContext.headers)."
    ),
    "approval_denied": (
        "Do not retry this call as it is: an operator denied it. Change the request or ask an operator why."
    ),
    "approval_timeout": (
        "Nobody decided in time. Retry later (a retry asks again) or ask an operator to review the queue."
    ),
    "approval_capacity_exhausted": (
        "Retry later: too many calls are waiting for human approval already (approval.max_pending), "
        "so this one was not queued. Ask an operator to work through the approval queue."
    ),
    "client_disconnected": "The call was not forwarded; retry it if it is still needed.",
    "kill_switch": (
        "Do not retry: an operator stopped tool calls with the kill switch. Wait until an operator "
        "resumes (helio resume), or ask one why."
    ),
    "request_cancelled": "You cancelled this call while it was held; it was not forwarded. Call again if needed.",
    "shutdown_cancelled": (
        "The call was not forwarded. Retry the identical call once the proxy is back: an approval "
        "given meanwhile releases it."
    ),
    "invalid_arguments": (
        "Fix the arguments listed in errors (each names its JSON path and what the tool's inputSchema "
        "expects), then call again."
    ),
    "tool_not_found": "Call tools/list and use one of the tools the server lists; do not retry this name.",
    "sensitive_content": (
        "Remove the secret or personal data found at the listed paths, then call again if the call still makes sense."
    ),
}

INVALID_AMOUNT_SUGGESTION: Final = "Retry with the amount as a non-negative JSON number (not a string)."

FINAL_SUGGESTIONS: Final = {
    "spend_limited": (
        "Waiting does not help: this amount alone is over the spend limit (max_spend). Retry with a "
        "smaller amount, or ask an operator."
    ),
    "budget_exceeded": (
        "Waiting does not help: the amount is over what the budget can ever hold in its window (or the "
        "window is the whole session). Use a smaller amount or ask an operator to raise the budget."
    ),
}
"""Suggestions for limit blocks that cannot clear by waiting (``retry_allowed: false``)."""

_INVALID_AMOUNT: Final = {
    "missing": "is missing",
    "not_a_number": "is not a JSON number",
    "not_finite": "is not a finite number",
    "negative": "is negative",
}

LIMIT_REASONS: Final = frozenset(
    {
        "limits_unavailable",
        "store_unavailable",
        "rate_limited",
        "spend_limited",
        "budget_exceeded",
        "session_unresolved",
    }
)
"""Block reasons that mean a limit or budget stopped the call (``limits_ok: false`` in a dry run)."""


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
        case "approval_unavailable":
            return f"Tool {tool!r} requires human approval ({rule}), and no approval channel is available."
        case "limits_unavailable":
            return f"Tool {tool!r} is under a limit ({rule}) that cannot be enforced, so it is blocked."
        case "baselines_unavailable":
            return (
                f"Tool {tool!r} is blocked for now: its annotations are not known yet (the upstream's "
                "tools have not been listed), and the policy depends on them."
            )
        case "store_unavailable":
            return (
                f"Tool {tool!r} is blocked for now: the store that holds its limits ({rule}) is unreachable."
            )
        case "audit_unavailable":
            return (
                f"Tool {tool!r} was not forwarded: its call could not be recorded right now (strict audit, "
                "audit store unreachable)."
            )
        case "rate_limited" | "spend_limited" | "budget_exceeded" | "session_unresolved":
            return _limit_message(decision, tool, rule)
        case "approval_denied":
            why = (decision.details or {}).get("denial_reason")
            return f"Tool {tool!r} was denied by an operator ({rule})" + (f": {why}" if why else ".")
        case "approval_timeout":
            return f"Tool {tool!r} needed approval ({rule}) and nobody decided in time."
        case "approval_capacity_exhausted":
            most = (decision.details or {}).get("max_pending")
            return (
                f"Tool {tool!r} needs approval ({rule}), but the approval queue is full "
                f"({most} tickets open); it was not queued or forwarded."
            )
        case "client_disconnected":
            return f"Tool {tool!r} was cancelled: the client disconnected while it waited for approval."
        case "request_cancelled":
            return (
                f"Tool {tool!r} was cancelled by the client while it was held ({rule}); it was not forwarded."
            )
        case "shutdown_cancelled":
            return f"Tool {tool!r} was cancelled: the proxy shut down while it waited for approval."
        case "kill_switch":
            details = decision.details or {}
            why = details.get("kill_switch_reason")
            scope = details.get("kill_switch_scope", "global")
            return f"Tool {tool!r} is blocked: the kill switch is on ({scope})" + (f": {why}" if why else ".")
        case "invalid_arguments":
            count = len((decision.details or {}).get("errors") or [])
            return f"Tool {tool!r} was not called: {count} argument(s) do not match its inputSchema."
        case "tool_not_found":
            return f"Tool {tool!r} is not listed by the server; it was not called."
        case "sensitive_content":
            return f"Tool {tool!r} was not called: its arguments carry sensitive content."
        case _:
            return f"Tool {tool!r} is blocked ({decision.reason})."


def _limit_message(decision: Deny, tool: str, rule: str) -> str:
    details: Mapping[str, Any] = decision.details or {}
    match decision.reason:
        case "rate_limited":
            return (
                f"Tool {tool!r} is rate limited by {rule}: {details.get('current_calls')} of "
                f"{details.get('max_calls')} calls used in {details.get('window_seconds')}s; "
                f"retry after {details.get('reset_at')}."
            )
        case "spend_limited" if "invalid_amount" in details:
            problem = _INVALID_AMOUNT.get(str(details["invalid_amount"]), "is invalid")
            return (
                f"Tool {tool!r} is blocked by the spend limit of {rule}: the amount at "
                f"{details.get('field')} {problem}."
            )
        case "spend_limited":
            return (
                f"Tool {tool!r} would exceed the spend limit of {rule}: {details.get('current_spend')} + "
                f"{details.get('attempted_amount')} over {details.get('max_spend')} {details.get('currency')} "
                f"in {details.get('window_seconds')}s."
            )
        case "budget_exceeded":
            budgets: list[Any] = list(details.get("budgets") or [])
            names = ", ".join(
                repr(cast(dict[str, Any], b).get("name")) for b in budgets if isinstance(b, dict)
            )
            return f"Tool {tool!r} would exceed budget {names}."
        case _:
            return f"Tool {tool!r} is under a per-session limit and the call carries no session id."


def block_feedback(decision: Deny, tool: str) -> tuple[str, dict[str, Any]]:
    """The JSON-RPC error ``message`` and ``data`` for a blocked call."""
    own = decision.feedback if decision.reason != "tool_definition_drift" else None
    gate = decision.gate
    data: dict[str, Any] = {
        "blocked": True,
        "reason": decision.reason,
        "rule": decision.rule,
        "rule_index": decision.rule_index,
        "action": decision.blocked_action,
        "suggestion": SUGGESTIONS.get(decision.reason, ""),
        "retry_allowed": decision.retry_allowed,
    }
    if gate is not None:
        data.update(gate.feedback_fields())
    elif decision.reason == "policy_denied":
        data["policy_reason"] = decision.policy_reason
    elif decision.reason == "tool_definition_drift":
        data["drifted_aspects"] = list(decision.drifted_aspects)
    if decision.details:
        data.update(decision.details)
        if decision.reason == "spend_limited" and "invalid_amount" in decision.details:
            data["suggestion"] = INVALID_AMOUNT_SUGGESTION
        elif not decision.retry_allowed and decision.reason in FINAL_SUGGESTIONS:
            data["suggestion"] = FINAL_SUGGESTIONS[decision.reason]
    if own and own.suggestion:
        data["suggestion"] = own.suggestion
    if own:
        message = own.message
    elif gate is not None:
        message = gate.message(tool)
    else:
        message = _message(decision, tool)
    return message, data


def simulation_report(decision: DryRun, enforced: Decision) -> dict[str, Any]:
    """The JSON a dry-run answers with (as ``content[0].text``).

    ``enforced`` is what the call would finally have met once approvals and limits had their
    say: the decision itself, an ``Allow``, or a ``Deny``.
    """
    would = decision.would
    report: dict[str, Any] = {
        "dry_run": True,
        "would_forward": isinstance(enforced, Allow),
        "policy_decision": decision.policy_decision,
        "matched_rule": would.rule,
        "evidence_satisfied": not (isinstance(would, Deny) and would.gate is not None),
        "limits_ok": not (isinstance(enforced, Deny) and enforced.reason in LIMIT_REASONS),
    }
    if isinstance(enforced, Deny) and enforced.details and "budgets" in enforced.details:
        report["budgets"] = enforced.details["budgets"]
    return report
