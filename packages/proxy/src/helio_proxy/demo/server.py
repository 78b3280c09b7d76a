"""An example MCP server for the demo and the tests (official ``mcp`` SDK, streamable HTTP).

Run: ``python -m helio_proxy.demo.server --port 3001 [--json] [--stateful]``. Stateless by default, so a
bare ``curl`` works without an ``initialize`` handshake; It needs the ``demo`` extra
(``pip install 'helio-proxy[demo]'``). ``--transport stdio`` speaks MCP on stdin/stdout instead
(``helio wrap -- python -m helio_proxy.demo.server --transport stdio``).

Bad arguments (an unknown order, an amount that is not a positive finite number) raise the SDK's
:class:`ToolError`: the agent gets ``isError: true`` with the reason, and the server logs one line,
not a traceback (any other exception is the SDK's "unexpected" path, which hides the text and
logs a traceback).
"""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
WRITES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
DESTRUCTIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)

ORDERS: dict[str, dict[str, Any]] = {
    "A-1001": {"order_id": "A-1001", "customer": "alice@example.com", "total": "42.50", "currency": "GBP"},
    "A-1002": {"order_id": "A-1002", "customer": "bob@example.com", "total": "310.00", "currency": "GBP"},
}


def build_server() -> MCPServer:
    """The demo tools: reads, writes, a destructive one, a payment, a refund, a slow one, a failing one."""
    # WARNING from the start: the SDK configures its logging when the server is built, and its
    # INFO lines would otherwise interleave with the proxy's startup output in `helio demo`.
    server = MCPServer(
        "helio-demo", version="1.0.0", instructions="Demo tools governed by Helio.", log_level="WARNING"
    )

    @server.tool(annotations=READ_ONLY)
    def get_weather(city: str) -> str:
        """Current weather for a city (canned data)."""
        return f"{city}: 18°C, light rain"

    @server.tool(annotations=READ_ONLY)
    def search_docs(query: str) -> list[str]:
        """Search the demo knowledge base."""
        docs = ["refund policy: 30 days", "shipping: 3-5 days", "support hours: 9-17 UK"]
        return [d for d in docs if query.lower() in d] or docs[:1]

    @server.tool(annotations=READ_ONLY)
    def lookup_order(order_id: str) -> dict[str, Any]:
        """Look up an order; unknown ids are a tool error (isError: true)."""
        if order_id not in ORDERS:
            raise ToolError(f"no order {order_id!r}; known orders: {', '.join(sorted(ORDERS))}")
        return ORDERS[order_id]

    @server.tool(annotations=WRITES)
    def send_email(to: str, body: str) -> str:
        """Send an email (pretend)."""
        return f"sent {len(body)} characters to {to}"

    @server.tool(annotations=DESTRUCTIVE)
    def delete_user(user_id: str) -> str:
        """Delete a user account (pretend)."""
        return f"deleted user {user_id}"

    @server.tool(annotations=WRITES)
    def create_payment(amount: float, currency: str = "GBP", recipient: str = "acme") -> dict[str, str]:
        """Create a payment (pretend)."""
        try:
            value = Decimal(str(amount))
        except InvalidOperation:
            raise ToolError(f"amount must be a number, got {amount!r}") from None
        if not value.is_finite() or value <= 0:
            raise ToolError(f"amount must be a positive finite number, got {amount!r}")
        return {"status": "created", "amount": str(value), "currency": currency, "recipient": recipient}

    @server.tool(annotations=WRITES)
    def refund_order(order_id: str) -> dict[str, str]:
        """Refund an order in full (pretend); unknown ids are a tool error."""
        if order_id not in ORDERS:
            raise ValueError(f"no order {order_id}")
        order = ORDERS[order_id]
        return {
            "order_id": order_id,
            "amount": order["total"],
            "currency": order["currency"],
            "status": "refunded",
        }

    @server.tool(annotations=READ_ONLY)
    async def build_report(steps: int, ctx: Context) -> str:
        """A slow task that reports progress after each step."""
        steps = max(1, min(steps, 20))
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
        return f"report ready after {steps} steps"

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
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
    if args.transport == "stdio":
        server.run("stdio")
        return
    server.run(
        "streamable-http",
        host=args.host,
        port=args.port,
        json_response=args.json,
        stateless_http=not args.stateful,
    )


if __name__ == "__main__":
    main()
