"""An agent that uses the Helio SDK against ``helio demo``: it is blocked, repairs, and is allowed.

Run ``./dev demo``; in a second terminal, from the repository root, paste the three ``export`` lines
the demo printed (``HELIO_SDK_URL``, ``HELIO_SDK_TOKEN``, ``HELIO_MCP_URL``), then::

    .venv/bin/python examples/demo-agent/agent.py [--order-id A-1001]

It asks the demo to refund an order. The demo's ``refund-needs-order-data`` rule blocks the call
(``evidence_missing``: ``order_data``), so the agent does what the block says: it looks the order
up, marks the result as evidence ``order_data`` through the SDK's sideband, and retries in the same
session, which is allowed. MCP requests are plain JSON-RPC POSTs (the demo server is stateless)
carrying ``HelioContext.headers``, so the proxy files the calls and the evidence under one session.

Exit status: 0 when the refund went through, 1 when it did not, 2 when the proxy or the sideband
could not be used at all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from helio import HelioContext, HelioError

BLOCKED = -32001
"""The JSON-RPC error code of every Helio governance block."""
DEFAULT_MCP_URL = "http://127.0.0.1:3000/mcp"


class McpClient:
    """The smallest MCP client that will do: one ``tools/call`` per POST, JSON answers."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the MCP URL must be an http:// or https:// URL, not {url!r}")
        self.url = url
        self.headers = {"content-type": "application/json", "accept": "application/json", **headers}
        self.next_id = 1

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The JSON-RPC answer: ``{"result": ...}`` or ``{"error": ...}``."""
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call"}
        message["params"] = {"name": name, "arguments": arguments}
        self.next_id += 1
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url, data=json.dumps(message).encode(), headers=self.headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - as above
            return json.loads(response.read())


def _call(mcp: McpClient, name: str, arguments: dict[str, Any]) -> tuple[str, Any]:
    """Call a tool and print the outcome: ``("ok", result)``, ``("blocked", data)`` or ``("failed", text)``."""
    shown = f"{name}({', '.join(f'{k}={v}' for k, v in arguments.items())})"
    answer = mcp.call_tool(name, arguments)
    error = answer.get("error")
    if error is not None:
        data = error.get("data") or {}
        if error.get("code") == BLOCKED and data.get("blocked") is True:
            missing = ", ".join(data.get("missing_evidence") or [])
            print(f"-> {shown}: BLOCKED by Helio ({data.get('reason')}{': ' + missing if missing else ''})")
            print(f"     message:    {error.get('message')}")
            print(f"     suggestion: {data.get('suggestion')}")
            return "blocked", data
        print(f"-> {shown}: error {error.get('code')}: {error.get('message')}")
        return "failed", error.get("message")
    result = answer["result"]
    value = result.get("structuredContent")
    if result.get("isError"):
        print(f"-> {shown}: tool error: {json.dumps(result.get('content'))}")
        return "failed", value
    print(f"-> {shown}: ok {json.dumps(value)}")
    return "ok", value


def refund(ctx: HelioContext, mcp: McpClient, order_id: str) -> bool:
    outcome, found = _call(mcp, "refund_order", {"order_id": order_id})
    if outcome != "blocked":
        return outcome == "ok"
    for key in found.get("missing_evidence") or []:
        # The demo's convention: 'order_data' is what lookup_order returns for the order.
        outcome, order = _call(mcp, "lookup_order", {"order_id": order_id})
        if outcome != "ok":
            return False
        ctx.mark_evidence("lookup_order", key, order)
        print(f"-> mark_evidence {key!r} (the lookup_order result) through the sideband: recorded")
    outcome, _ = _call(mcp, "refund_order", {"order_id": order_id})
    return outcome == "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Refund an order through helio demo, with the Helio SDK.")
    parser.add_argument(
        "--mcp-url",
        default=os.environ.get("HELIO_MCP_URL") or DEFAULT_MCP_URL,
        help=f"the proxy's MCP endpoint (default: $HELIO_MCP_URL, else {DEFAULT_MCP_URL})",
    )
    parser.add_argument("--order-id", default="A-1001")
    args = parser.parse_args(argv)
    try:
        with HelioContext() as ctx:  # the sideband from HELIO_SDK_URL, its token from HELIO_SDK_TOKEN
            print(
                f"Session {ctx.session_id}: MCP {args.mcp_url}, Helio SDK sideband {ctx.client.sideband_url}"
            )
            done = refund(ctx, McpClient(args.mcp_url, ctx.headers), args.order_id)
    except (HelioError, ValueError, urllib.error.URLError) as exc:
        print(f"Cannot use Helio: {exc}", file=sys.stderr)
        return 2
    print("Refund done." if done else "Refund NOT done.")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
