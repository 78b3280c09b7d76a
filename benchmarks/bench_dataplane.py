"""Time each data-plane feature per call, on and off.

Run: ``uv run python benchmarks/bench_dataplane.py``. Each line is one call's data-plane work
(the before-forward check, and the after-answer check on a typical result) with one feature on
and every other off, against everything off; the last line has everything on. The tool is a
payment tool with a five-property ``inputSchema`` and a two-property ``outputSchema``; the
result carries about 400 bytes of text. Scanning uses every built-in detector.

The schema target is at most 20 µs per call.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from helio_proxy.config import HelioConfig
from helio_proxy.config.data_plane import BUILTIN_DETECTORS
from helio_proxy.dataplane import DataPlane, ToolInventory
from helio_proxy.policy import BaselineCache

ITERATIONS = 20_000
TOOL: dict[str, Any] = {
    "name": "create_payment",
    "description": "Pay someone.",
    "inputSchema": {
        "type": "object",
        "properties": {
            "to": {"type": "string", "format": "email"},
            "amount": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]},
            "memo": {"type": "string", "maxLength": 200},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["to", "amount", "currency"],
        "additionalProperties": False,
    },
    "outputSchema": {
        "type": "object",
        "properties": {"payment_id": {"type": "string"}, "status": {"type": "string"}},
        "required": ["payment_id", "status"],
    },
}
ARGUMENTS: dict[str, Any] = {
    "to": "ops@example.com",
    "amount": 250.0,
    "currency": "GBP",
    "memo": "invoice 42",
    "tags": ["q3"],
}
TEXT = (
    "Payment pay_8f3a2c created for 250.00 GBP to the supplier account on file. "
    "The invoice reference is INV-2026-0042 and settlement is expected within two working days. "
) * 2


def result() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {
            "content": [{"type": "text", "text": TEXT}],
            "structuredContent": {"payment_id": "pay_8f3a2c", "status": "created"},
            "isError": False,
        },
    }


def config(data_plane: dict[str, Any]) -> HelioConfig:
    return HelioConfig.model_validate(
        {
            "version": "1",
            "upstream": {"url": "http://127.0.0.1:9/mcp"},
            "dashboard": {"enabled": False},
            "data_plane": data_plane,
        }
    )


OFF: dict[str, Any] = {"mode": "off"}
SCAN: list[dict[str, Any]] = [{"name": "all", "detect": list(BUILTIN_DETECTORS), "action": "redact"}]
CASES: list[tuple[str, dict[str, Any]]] = [
    ("everything off", OFF),
    ("input schema", {**OFF, "input_schema": "enforce"}),
    ("unknown tools", {**OFF, "unknown_tools": "enforce"}),
    ("output schema", {**OFF, "output_schema": "enforce"}),
    ("argument scan", {**OFF, "scan": [{**SCAN[0], "scope": ["arguments"], "mode": "enforce"}]}),
    ("result scan", {**OFF, "scan": [{**SCAN[0], "scope": ["results"], "mode": "enforce"}]}),
    ("everything on", {"mode": "enforce", "scan": SCAN}),
]


async def per_call(data_plane: dict[str, Any]) -> float:
    baselines = BaselineCache()
    baselines.observe([TOOL])
    inventory = ToolInventory()
    inventory.observe([TOOL])
    plane = DataPlane(baselines, None, inventory=inventory)
    snapshot = config(data_plane)

    def record(_facts: dict[str, Any], _reason: str | None) -> None:
        return None

    async def one() -> None:
        checked = await plane.check_call(snapshot, "create_payment", ARGUMENTS)
        assert checked.deny is None
        check = plane.result_check(snapshot, "create_payment", record)
        if check is not None:
            check.observe(result(), None)

    for _ in range(500):
        await one()
    start = time.perf_counter()
    for _ in range(ITERATIONS):
        await one()
    return (time.perf_counter() - start) / ITERATIONS * 1e6


async def main() -> None:
    base = await per_call(OFF)
    print(f"{'feature':<16} {'µs/call':>8} {'added µs':>9}")
    for name, data_plane in CASES:
        took = await per_call(data_plane)
        print(f"{name:<16} {took:8.2f} {took - base:9.2f}")


if __name__ == "__main__":
    asyncio.run(main())
