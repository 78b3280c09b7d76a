"""The refund example's MCP server: order lookup, customer check, refunds (official ``mcp`` SDK).

Run: ``python examples/refund/server.py --port 3001``. Streamable HTTP on ``/mcp``, stateless by
default (like the demo server), so every request stands alone and the proxy in front of it
decides which calls belong to one agent session. ``--transport stdio`` speaks MCP on stdin/stdout
instead (``helio wrap -- python examples/refund/server.py --transport stdio``). The data is canned and kept in memory.

Tools (the names contain dots, as many real servers' do):

* ``orders.lookup(order_id)``: read-only; returns the order. An unknown id is a tool error
  (``isError: true``).
* ``customer.verify(order_id, email)``: read-only; checks that ``email`` is the order's customer.
  A mismatch is a tool error.
* ``process_refund(order_id, amount=None, reason=...)``: a write (not destructive); refunds the
  order, in full unless ``amount`` is given. Nothing here checks that the order was looked up
  first: that is Helio's job.
"""

from __future__ import annotations

import argparse
import itertools
import os
from decimal import Decimal, InvalidOperation
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
REFUND = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)

ORDERS: dict[str, dict[str, str]] = {
    "A-1001": {
        "order_id": "A-1001",
        "customer": "alice@example.com",
        "item": "Espresso machine",
        "total": "249.00",
        "currency": "GBP",
        "status": "delivered",
    },
    "A-1002": {
        "order_id": "A-1002",
        "customer": "bob@example.com",
        "item": "Grinder",
        "total": "89.50",
        "currency": "GBP",
        "status": "delivered",
    },
}


def _order(order_id: str) -> dict[str, str]:
    try:
        return ORDERS[order_id]
    except KeyError:
        raise ToolError(f"no order {order_id!r}") from None


def build_server() -> MCPServer:
    """The three refund tools, with fresh refund bookkeeping."""
    server = MCPServer(
        "refund-example", version="1.0.0", instructions="Order lookup, customer checks and refunds."
    )
    refund_ids = itertools.count(1)
    refunded: dict[str, Decimal] = {}

    @server.tool(name="orders.lookup", annotations=READ_ONLY)
    def lookup(order_id: str) -> dict[str, Any]:
        """Look up an order by id (e.g. A-1001)."""
        order = _order(order_id)
        return {**order, "refunded": str(refunded.get(order_id, Decimal("0.00")))}

    @server.tool(name="customer.verify", annotations=READ_ONLY)
    def verify(order_id: str, email: str) -> dict[str, Any]:
        """Check that ``email`` is the customer who placed the order."""
        order = _order(order_id)
        if email.strip().lower() != order["customer"]:
            raise ToolError(f"{email!r} is not the customer of order {order_id}")
        return {"order_id": order_id, "customer": order["customer"], "verified": True}

    @server.tool(name="process_refund", annotations=REFUND)
    def process_refund(
        order_id: str, amount: str | None = None, reason: str = "customer request"
    ) -> dict[str, Any]:
        """Refund an order, in full unless ``amount`` (a decimal string, e.g. "20.00") is given."""
        order = _order(order_id)
        total = Decimal(order["total"])
        try:
            value = total if amount is None else Decimal(amount)
        except InvalidOperation:
            raise ToolError(f"amount {amount!r} is not a decimal number") from None
        already = refunded.get(order_id, Decimal("0.00"))
        if value <= 0 or already + value > total:
            raise ToolError(f"amount {value} is out of range (order total {total}, refunded {already})")
        refunded[order_id] = already + value
        return {
            "refund_id": f"R-{next(refund_ids):04d}",
            "order_id": order_id,
            "amount": f"{value:.2f}",
            "currency": order["currency"],
            "reason": reason,
            "status": "refunded",
        }

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description="The refund example's MCP server (streamable HTTP).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("REFUND_SERVER_PORT") or 3001),
        help="TCP port (default: $REFUND_SERVER_PORT, else 3001; helio.yaml reads the same variable)",
    )
    parser.add_argument("--json", action="store_true", help="answer with JSON bodies instead of SSE streams")
    parser.add_argument(
        "--stateful",
        action="store_true",
        help="require an initialize handshake and Mcp-Session-Id (default: stateless)",
    )
    parser.add_argument(
        "--transport",
        choices=["streamable-http", "stdio"],
        default="streamable-http",
        help="stdio: speak MCP on stdin/stdout (for helio wrap) instead of serving HTTP",
    )
    args = parser.parse_args()
    server = build_server()
    server.settings.log_level = "WARNING"
    if args.transport == "stdio":
        server.run("stdio")  # stdout carries the protocol: nothing else may be printed
        return
    print(f"Refund example MCP server on http://{args.host}:{args.port}/mcp", flush=True)
    server.run(
        "streamable-http",
        host=args.host,
        port=args.port,
        json_response=args.json,
        stateless_http=not args.stateful,
    )


if __name__ == "__main__":
    main()
