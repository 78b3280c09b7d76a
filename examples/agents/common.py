"""What the agent examples share: their options, their output, the refund "model", the repair.

Each example is one framework's agent around examples/refund/server.py behind
``helio start -c examples/refund/helio.yaml``: a refund needs verified evidence that the order was
looked up in the same session. The "model" is scripted (no LLM, no key): it asks for the refund,
and when the tool answers with Helio's feedback it calls the tools the feedback names, then asks
again. What an author copies is the Helio part: ``helio.instrument()``, the context around the
run, ``helio.blocked()`` in the framework's error hook, and ``mark_lookup`` after the lookup.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from helio import Blocked, HelioContext

SIDEBAND_URL = "http://127.0.0.1:3200"
PROXY_MCP_URL = "http://127.0.0.1:3000/mcp"


def options(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--proxy-url",
        default=os.environ.get("HELIO_MCP_URL", PROXY_MCP_URL),
        help="the proxy's MCP endpoint (default: $HELIO_MCP_URL or %(default)s)",
    )
    parser.add_argument(
        "--sideband-url", default=SIDEBAND_URL, help="the SDK sideband (token: $HELIO_SDK_TOKEN)"
    )
    parser.add_argument("--order-id", default="A-1001")
    parser.add_argument("--session-id", help="the session id to use (default: a fresh one)")
    return parser.parse_args()


def say(event: str, text: str) -> None:
    """One line of output: ``event: text`` (the e2e tests read these)."""
    print(f"{event}: {text}", flush=True)


def feedback(block: Blocked) -> str:
    """What the agent tells its model about a block: the fields it can act on, as JSON."""
    say(
        "blocked",
        f"{block.reason} missing_evidence={','.join(block.missing_evidence)} "
        f"missing_dependencies={','.join(block.missing_dependencies)}",
    )
    return json.dumps(
        {
            "blocked": block.reason,
            "message": block.message,
            "missing_evidence": block.missing_evidence,
            "missing_dependencies": block.missing_dependencies,
            "suggestion": block.suggestion,
            "retry_allowed": block.retry_allowed,
        }
    )


async def mark_lookup(ctx: HelioContext, order: Any) -> None:
    """Mark a successful ``orders.lookup`` result as evidence ``orders.lookup``, verified.

    The proxy lists the calls it forwarded in this session; passing the lookup's ``call_id``
    binds the evidence to that real call, which the policy's ``verified: true`` asks for.
    """
    state = (await ctx.aget_evidence_state()).state
    call = next(c for c in reversed(state.completed_tools) if c.tool_name == "orders.lookup" and c.succeeded)
    receipt = await ctx.amark_evidence("orders.lookup", "orders.lookup", order, call_id=call.call_id)
    say("marked", f"orders.lookup verified={receipt.verified}")


def next_call(order_id: str, last: tuple[str, str] | None) -> tuple[str, dict[str, Any]] | None:
    """The scripted model: the next tool call after ``last`` (tool name, what it answered), or ``None``.

    Start with the refund; after Helio's feedback, call what it says is missing (this server's
    tools all take the order id); after a lookup, retry the refund; after the refund, stop.
    """
    if last is None:
        return "process_refund", {"order_id": order_id}
    tool, answer = last
    try:
        told: Any = json.loads(answer)
    except ValueError:
        told = None
    if isinstance(told, dict) and "blocked" in told:
        missing = [*told.get("missing_evidence", []), *told.get("missing_dependencies", [])]
        if missing and told.get("retry_allowed"):
            return missing[0], {"order_id": order_id}
        return None
    if tool == "orders.lookup":
        return "process_refund", {"order_id": order_id}
    return None
