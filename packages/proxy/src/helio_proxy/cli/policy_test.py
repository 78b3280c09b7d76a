"""``helio policy test``: one simulated call through the compiled policy, explained.

The tool's annotations come from where the running proxy takes them: the baseline the store
holds for it (see :mod:`helio_proxy.baselines`), drift included. Only a tool the store has never
seen gets the MCP defaults (destructive, open-world), as the proxy treats it too. ``--annotations``
overrides both, for "what if" questions; unknown hint names and non-boolean values are refused.

Rate limits, spend limits and budgets are checked against the counters the store holds now, read
only (nothing is charged), with the proxy's own code: amounts are validated as the proxy does.
A call that needs approval is reported as held, with the channel and timeout it would wait on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from helio_proxy.baselines import BaselineError, StoredTool, baseline_key, load_tools
from helio_proxy.baselines.table import load_fingerprints
from helio_proxy.config import LoadedConfig
from helio_proxy.config.durations import seconds
from helio_proxy.config.root import HelioConfig
from helio_proxy.dataplane.inspector import DataPlane
from helio_proxy.dataplane.tools import ToolInventory
from helio_proxy.evidence import SessionSnapshot
from helio_proxy.gateway.enforcement import GovernanceEnforcer, GovernedCall, Settlement
from helio_proxy.jsonrpc import POLICY_BLOCKED
from helio_proxy.limits import ledger
from helio_proxy.limits.catalog import budget_shapes, rule_shapes
from helio_proxy.limits.gate import LimitsGate
from helio_proxy.policy import (
    BaselineCache,
    CallFacts,
    Decision,
    DecisionContext,
    Deny,
    DryRun,
    Hints,
    RequireApproval,
    SnapshotGates,
    ToolFacts,
    block_feedback,
    compile_policy,
    simulation_report,
)
from helio_proxy.session.identity import SessionIdentity
from helio_proxy.store import Store, create_store, store_url
from helio_proxy.store.sqlite import SqliteStore

_T = TypeVar("_T")


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
    stored: StoredTool | None = None
    """The store's baseline row of the tool (its schemas feed the data-plane checks)."""


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
    return ToolSource(_facts(row), name, _describe(row, name, store.description), row)


HINT_NAMES = tuple(Hints.__dataclass_fields__)
"""The annotation hints ``--annotations`` may set (``title`` is accepted and ignored)."""


def given_annotations(annotations_json: str, upstream: str | None) -> ToolSource:
    """``--annotations``: the operator's own, instead of the store's.

    Every key must be an MCP hint name (or ``title``) and every hint a JSON boolean: a typo or a
    ``"true"`` string would otherwise silently fall back to the cautious default.
    """
    annotations = _json_object(annotations_json, "--annotations")
    for key, value in annotations.items():
        if key == "title":
            continue
        if key not in HINT_NAMES:
            raise PolicyTestInputError(
                f"--annotations: unknown hint {key!r} (known: {', '.join(HINT_NAMES)}, title)"
            )
        if not isinstance(value, bool):
            raise PolicyTestInputError(
                f"--annotations: {key} must be true or false (a JSON boolean), not {json.dumps(value)}"
            )
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


class _NeverHolds:
    """The approval side of a peek: a dry look never waits for a human (``peek`` never calls these)."""

    async def hold(self, decision: RequireApproval, call: GovernedCall) -> Settlement:
        raise RuntimeError("helio policy test never holds a call")

    async def hold_budget(
        self, decision: Decision, call: GovernedCall, breached: list[dict[str, Any]]
    ) -> Settlement:
        raise RuntimeError("helio policy test never holds a call")


def limits_view(config: HelioConfig, store: Store | None) -> LimitsGate:
    """A limit gate whose local view holds the store's counters now (read only; empty without a store)."""
    gate = LimitsGate(store or create_store(store_url(config.audit, config.store)), lambda: config)
    if store is None:
        return gate
    budgets = gate._budgets(config)  # pyright: ignore[reportPrivateUsage]
    known = store.read_sync(ledger.budget_epochs)
    # A budget whose limit, currency, window or key changed starts a new (empty) epoch.
    gate.epochs = {
        b.name: known[b.name][0]
        for b in budgets
        if b.name in known and known[b.name][1] == b.fingerprint and known[b.name][2] is None
    }
    shapes = [*rule_shapes(config), *budget_shapes(config, gate.epochs)]
    by_triple = {shape.triple: shape for shape in shapes}
    now = gate.clock()

    def job(conn: Any) -> list[ledger.BucketView]:
        rows, _ = ledger.bucket_rows(conn, list(by_triple))
        views: list[ledger.BucketView] = []
        for row in rows:
            shape = by_triple[(row.bucket.kind, row.bucket.owner, row.bucket.version)]
            usage = ledger.bucket_usage(conn, shape.charge(row.bucket), row.started_at, now)
            views.append(ledger.BucketView(row.bucket, shape.window, row.started_at, usage))
        return views

    gate.mirror.put(store.read_sync(job))
    return gate


def _completed(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to its end, also when the caller is itself inside an event loop (tests)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def data_plane_check(
    loaded: LoadedConfig, call: CallFacts, source: ToolSource, store: Store | None
) -> tuple[Deny | None, dict[str, Any]]:
    """What the proxy's data plane does with the call before the policy decides, with its own code.

    The tool's ``inputSchema`` is the stored baseline's; the upstream's tool list is the set of
    tools the store has baselines for (the proxy lists once more before refusing a tool it does not
    know, so a tool added upstream since the last listing shows here as ``tool_not_found``).
    Returns the block (or ``None``) and the arguments the policy then sees (scans may redact).
    """
    config = loaded.config
    baselines = BaselineCache()
    if source.stored is not None:
        baselines.store.add(source.stored.baseline)
    inventory = ToolInventory()
    if store is not None:
        listed = set(store.read_sync(load_fingerprints(baseline_key(source.upstream))))
        if listed:
            inventory.listed = listed
    plane = DataPlane(baselines, source.upstream, inventory=inventory)
    rule = compile_policy(config).data_plane_rule(call, source.facts.hints)
    given: dict[str, Any] = dict(call.arguments or {})
    checked = _completed(plane.check_call(config, call.tool, given, rule))
    return checked.deny, checked.arguments if checked.arguments is not None else given


def _held(config: HelioConfig, decision: RequireApproval) -> str:
    route = decision.route
    channel = route.channel if route is not None else "dashboard"
    timeout = (route.timeout if route is not None else None) or config.approval.timeout
    quorum = (route.quorum if route is not None else None) or config.approval.quorum
    return f"held for approval (channel {channel!r}, timeout {int(seconds(timeout))}s, quorum {quorum})"


def explain(
    loaded: LoadedConfig,
    tool: str,
    args_json: str,
    source: ToolSource,
    session_id: str | None,
    store: Store | None = None,
) -> str:
    """The decision, the matched rule and the JSON-RPC answer the agent would get, as text.

    The ``Outcome: forwarded | blocked (<reason>) | held for approval (...) | dry run`` line is what
    the running proxy would do with the call now.
    """
    if not tool:
        raise PolicyTestInputError("--tool must not be empty")
    arguments = _json_object(args_json, "--args")
    config = loaded.config
    tool_facts = source.facts
    call = CallFacts(tool=tool, arguments=arguments, upstream=source.upstream, session_id=session_id)
    plane_deny, checked_arguments = data_plane_check(loaded, call, source, store)
    if checked_arguments != arguments:
        call = CallFacts(
            tool=tool, arguments=checked_arguments, upstream=source.upstream, session_id=session_id
        )
    # The proxy's session store is in another process, so gates are checked against an empty
    # session (no evidence, no earlier calls): the one --session names, or a nameless one. What
    # a gate needs is then listed in full, which is what the operator asked to see.
    state = SessionSnapshot(session_id=session_id or "")
    context = DecisionContext(tool=tool_facts, gates=SnapshotGates(state, now_ms=0))
    decision = compile_policy(config).decide(call, context)
    governed = GovernedCall(facts=call, identity=SessionIdentity(session_id), request_id=0)
    enforcer = GovernanceEnforcer(_NeverHolds(), limits_view(config, store))
    enforced = plane_deny if plane_deny is not None else enforcer.peek(decision, governed).decision
    hints = tool_facts.hints
    lines = [
        f"Tool: {tool}",
        f"Session: {session_id or '(none given)'}, empty: no evidence, no earlier calls",
        "Annotations: "
        + ", ".join(f"{name}={str(hints.get(name)).lower()}" for name in Hints.__dataclass_fields__),
        f"Annotations source: {source.source}",
        "Limits: "
        + (
            f"the counters in {store.description} now (read only)"
            if store is not None
            else "no store yet: empty"
        ),
        f"Decision: {decision.action} ({decision.reason})",
        "Matched rule: "
        + (
            f"{decision.rule} (index {decision.rule_index})"
            if decision.rule is not None
            else "none (default)"
        ),
    ]
    details: list[str] = []
    if plane_deny is not None:
        details.append(f"Data plane: blocked ({plane_deny.reason}) before the policy decides")
        message, data = block_feedback(plane_deny, tool)
        error = {"code": POLICY_BLOCKED, "message": message, "data": data}
        details.append("JSON-RPC error: " + json.dumps(error, indent=2))
        outcome = f"blocked ({plane_deny.reason})"
    elif isinstance(decision, DryRun):
        details.append(
            "Result (dry run, nothing forwarded): " + json.dumps(simulation_report(decision, enforced))
        )
        outcome = "dry run (nothing forwarded)"
    elif isinstance(enforced, Deny):
        if enforced is not decision:
            details.append(f"Enforced: blocked ({enforced.reason})")
        message, data = block_feedback(enforced, tool)
        error = {"code": POLICY_BLOCKED, "message": message, "data": data}
        details.append("JSON-RPC error: " + json.dumps(error, indent=2))
        outcome = f"blocked ({enforced.reason})"
    elif isinstance(decision, RequireApproval):
        outcome = _held(config, decision)
        details.append(f"Would be {outcome}; once approved, the limits allow it and it is forwarded.")
    else:
        details.append("Would be forwarded upstream.")
        outcome = "forwarded"
    lines.append(f"Outcome: {outcome}")
    lines.extend(details)
    return "\n".join(lines)
