"""``helio policy test``: one simulated call through the compiled policy, explained.

The tool's annotations come from where the running proxy takes them: the baseline the store
holds for it (see :mod:`helio_proxy.baselines`), drift included. Only a tool the store has never
seen gets the MCP defaults (destructive, open-world), as the proxy treats it too. ``--annotations``
overrides both, for "what if" questions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from helio_proxy.baselines import BaselineError, StoredTool, baseline_key, load_tools
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
from helio_proxy.store import Store, create_store, store_url
from helio_proxy.store.sqlite import SqliteStore


class PolicyTestInputError(ValueError):
    """``--args`` or ``--annotations`` is not a JSON object."""


@dataclass(frozen=True, slots=True)
class ToolSource:
    """The annotations a simulated call is decided with, and where they came from."""

    facts: ToolFacts
    upstream: str | None
    """The upstream's name (``None`` for the single ``upstream:`` form)."""
    source: str
    """Said after ``Annotations source:``, e.g. ``from the store (baseline of 2026-12-01T09:00:00Z, ...)``."""


def _when(stamp: str | None) -> str:
    return f"{stamp[:19]}Z" if stamp else "an unknown time"


def _facts(stored: StoredTool) -> ToolFacts:
    """What the proxy's baseline cache answers for this row (the baseline's hints, and drift)."""
    baseline = stored.baseline
    pending = stored.pending
    if pending is None:
        return ToolFacts(hints=baseline.hints, known=True)
    return ToolFacts(
        hints=baseline.hints,
        known=True,
        drifted_aspects=pending.aspects,
        current_hints=pending.current.hints,
    )


def _describe(stored: StoredTool, upstream: str | None, where: str) -> str:
    taken = stored.accepted_at or stored.first_seen_at
    how = "accepted" if stored.accepted_at else "first seen"
    of = f" of upstream {upstream!r}" if upstream else ""
    text = f"from the store (baseline of {_when(taken)}, {how}{of}, in {where})"
    if stored.pending is not None:
        text += (
            f"; DRIFTED ({', '.join(stored.pending.aspects)}) since {_when(stored.pending_since)}, "
            "not accepted"
        )
    return text


def stored_tool(loaded: LoadedConfig, store: Store | None, tool: str, upstream: str | None) -> ToolSource:
    """The tool's facts as the running proxy has them in ``store`` (``None``: no store yet).

    With several upstreams and no ``upstream``, the one whose baselines hold ``tool`` is taken;
    :class:`BaselineError` when that is more than one (or ``upstream`` names none of the config's).
    """
    names = [u.name for u in loaded.config.upstream_list]
    if upstream is not None and upstream not in names:
        known = ", ".join(n for n in names if n) or "the config's single 'upstream' has no name"
        raise BaselineError(f"no upstream named {upstream!r} (known: {known})")
    candidates = [upstream] if upstream is not None else names
    if store is None:
        return ToolSource(
            ToolFacts(),
            candidates[0] if len(candidates) == 1 else None,
            "MCP defaults: tool unknown (no store yet: run the proxy once so it baselines the "
            "upstream's tools)",
        )
    found: list[tuple[str | None, StoredTool]] = []
    for name in candidates:
        rows = store.read_sync(load_tools(baseline_key(name), [tool]))
        found += [(name, row) for row in rows]
    if len(found) > 1:
        which = ", ".join(str(name) for name, _ in found)
        raise BaselineError(
            f"tool {tool!r} is baselined on several upstreams ({which}); choose with --upstream"
        )
    if not found:
        return ToolSource(
            ToolFacts(),
            candidates[0] if len(candidates) == 1 else None,
            f"MCP defaults: tool unknown (no baseline for it in {store.description})",
        )
    name, row = found[0]
    return ToolSource(_facts(row), name, _describe(row, name, store.description))


def given_annotations(annotations_json: str, upstream: str | None) -> ToolSource:
    """``--annotations``: the operator's own, instead of the store's."""
    annotations = _json_object(annotations_json, "--annotations")
    hints = Hints.from_annotations(annotations)
    return ToolSource(ToolFacts(hints=hints, known=True), upstream, "given with --annotations")


def open_store_if_any(loaded: LoadedConfig) -> Store | None:
    """The config's store for reading, or ``None`` when its SQLite file does not exist yet."""
    config = loaded.config
    store = create_store(store_url(config.audit, config.store))
    if isinstance(store, SqliteStore) and not store.path.exists():
        return None
    store.open_sync()
    return store


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyTestInputError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PolicyTestInputError(f"{option} must be a JSON object, e.g. '{{\"amount\": 10}}'")
    return cast(dict[str, Any], value)


def explain(
    loaded: LoadedConfig, tool: str, args_json: str, source: ToolSource, session_id: str | None
) -> str:
    """The decision, the matched rule and the JSON-RPC answer the agent would get, as text."""
    if not tool:
        raise PolicyTestInputError("--tool must not be empty")
    arguments = _json_object(args_json, "--args")
    tool_facts = source.facts
    call = CallFacts(tool=tool, arguments=arguments, upstream=source.upstream, session_id=session_id)
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
        + ", ".join(f"{name}={str(hints.get(name)).lower()}" for name in Hints.__dataclass_fields__),
        f"Annotations source: {source.source}",
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
