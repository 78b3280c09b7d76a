"""Time ``decide()`` per call for 10, 100 and 1,000 rules.

Run: ``uv run python benchmarks/bench_decide.py``. Two rule sets per size:

* ``tool-globs``: every rule names a tool glob (``svc<i>_*``) plus an input condition; the call
  matches none of them, so the per-tool candidate index does the work (typical configs);
* ``mixed``: no rule names a tool; half the rules test annotations the tool does not have
  (pruned by the per-tool index), the other half test a plain path and a JSONPath wildcard,
  and none matches, so the call ends in the default;
* ``wildcard``: the worst case: every rule is evaluated and walks ``$.items[*]``.

The goal is under 20 µs per call at 100 rules.
"""

from __future__ import annotations

import time
from typing import Any

from helio_proxy.config import HelioConfig
from helio_proxy.policy import CallFacts, CompiledPolicy, DecisionContext, Hints, ToolFacts, compile_policy

ITERATIONS = 20_000
ARGUMENTS: dict[str, Any] = {
    "amount": 250.0,
    "currency": "GBP",
    "items": [{"sku": "A-1", "qty": 1}, {"sku": "B-2", "qty": 3}],
    "note": "monthly invoice",
}
CONTEXT = DecisionContext(tool=ToolFacts(hints=Hints(readOnlyHint=False, destructiveHint=False), known=True))


def policy(rules: list[dict[str, Any]]) -> CompiledPolicy:
    config = HelioConfig.model_validate(
        {
            "version": "1",
            "upstream": {"url": "http://127.0.0.1:9/mcp"},
            "dashboard": {"enabled": False},
            "policies": {"rules": rules},
        }
    )
    return compile_policy(config)


def tool_glob_rules(count: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"r{i}",
            "match": {"tool": f"svc{i}_*", "input": {"$.amount": {"gt": 1000}}},
            "action": "deny",
        }
        for i in range(count)
    ]


def no_tool_rules(count: int) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for i in range(count):
        if i % 2:
            match = {"annotations": {"destructiveHint": True}, "input": {"$.amount": {"gt": 10_000 + i}}}
        else:
            match = {"input": {"$.items[*].sku": {"eq": f"Z-{i}"}, "$.currency": {"in": ["USD", "EUR"]}}}
        rules.append({"name": f"r{i}", "match": match, "action": "deny"})
    return rules


def wildcard_rules(count: int) -> list[dict[str, Any]]:
    return [
        {"name": f"r{i}", "match": {"input": {"$.items[*].sku": {"eq": f"Z-{i}"}}}, "action": "deny"}
        for i in range(count)
    ]


def per_call_microseconds(compiled: CompiledPolicy) -> float:
    call = CallFacts("create_payment", ARGUMENTS)
    decide = compiled.decide
    for _ in range(1_000):  # warm the candidate index and caches
        decide(call, CONTEXT)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(ITERATIONS):
            decide(call, CONTEXT)
        best = min(best, (time.perf_counter() - start) / ITERATIONS)
    return best * 1e6


def main() -> None:
    print(f"decide() per call, best of 5 runs x {ITERATIONS:,} calls")
    print(f"{'rules':>6}  {'tool-globs':>12}  {'mixed':>12}  {'wildcard':>12}")
    for count in (10, 100, 1_000):
        row = [
            per_call_microseconds(policy(build(count)))
            for build in (tool_glob_rules, no_tool_rules, wildcard_rules)
        ]
        print(f"{count:>6}" + "".join(f"  {value:>10.2f}µs" for value in row))


if __name__ == "__main__":
    main()
