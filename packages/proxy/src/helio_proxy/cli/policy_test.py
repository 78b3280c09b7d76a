"""``helio policy test``: one simulated call through the compiled policy, explained."""

from __future__ import annotations

import json
from typing import Any, cast

from helio_proxy.config import LoadedConfig
from helio_proxy.evidence import SessionSnapshot
from helio_proxy.gateway.enforcement import FailClosedEnforcer, GovernedCall
from helio_proxy.jsonrpc import POLICY_BLOCKED
from helio_proxy.policy import (
    CallFacts,
    DecisionContext,
    Deny,
    DryRun,
    Hints,
    SnapshotGates,
    ToolFacts,
    block_feedback,
    compile_policy,
    simulation_report,
)
from helio_proxy.session.identity import SessionIdentity


class PolicyTestInputError(ValueError):
    """``--args`` or ``--annotations`` is not a JSON object."""


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyTestInputError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PolicyTestInputError(f"{option} must be a JSON object, e.g. '{{\"amount\": 10}}'")
    return cast(dict[str, Any], value)


def explain(
    loaded: LoadedConfig, tool: str, args_json: str, annotations_json: str | None, session_id: str | None
) -> str:
    """The decision, the matched rule and the JSON-RPC answer the agent would get, as text."""
    if not tool:
        raise PolicyTestInputError("--tool must not be empty")
    arguments = _json_object(args_json, "--args")
    tool_facts = ToolFacts()
    if annotations_json is not None:
        annotations = _json_object(annotations_json, "--annotations")
        tool_facts = ToolFacts(hints=Hints.from_annotations(annotations), known=True)
    call = CallFacts(tool=tool, arguments=arguments, session_id=session_id)
    # The proxy's session store is in another process, so gates are checked against an empty
    # session (no evidence, no earlier calls): the one --session names, or a nameless one. What
    # a gate needs is then listed in full, which is what the operator asked to see.
    state = SessionSnapshot(session_id=session_id or "")
    context = DecisionContext(tool=tool_facts, gates=SnapshotGates(state, now_ms=0))
    decision = compile_policy(loaded.config).decide(call, context)
    governed = GovernedCall(facts=call, identity=SessionIdentity(session_id), request_id=0)
    enforced = FailClosedEnforcer().peek(decision, governed).decision
    hints = tool_facts.hints
    lines = [
        f"Tool: {tool}",
        f"Session: {session_id or '(none given)'}, empty: no evidence, no earlier calls",
        "Annotations: "
        + ", ".join(f"{name}={str(hints.get(name)).lower()}" for name in Hints.__dataclass_fields__)
        + ("" if tool_facts.known else " (unknown tool: MCP defaults)"),
        f"Decision: {decision.action} ({decision.reason})",
        "Matched rule: "
        + (
            f"{decision.rule} (index {decision.rule_index})"
            if decision.rule is not None
            else "none (default)"
        ),
    ]
    if isinstance(decision, DryRun):
        lines.append(
            "Result (dry run, nothing forwarded): " + json.dumps(simulation_report(decision, enforced))
        )
    elif isinstance(enforced, Deny):
        if enforced is not decision:
            lines.append(f"Enforced: blocked ({enforced.reason})")
        message, data = block_feedback(enforced, tool)
        error = {"code": POLICY_BLOCKED, "message": message, "data": data}
        lines.append("JSON-RPC error: " + json.dumps(error, indent=2))
    else:
        lines.append("Would be forwarded upstream.")
    return "\n".join(lines)
