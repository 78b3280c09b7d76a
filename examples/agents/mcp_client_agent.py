"""The refund agent with the official MCP Python SDK (``mcp`` 2.x) and no framework.

    python examples/agents/mcp_client_agent.py --order-id A-1001

``helio.instrument()`` makes the MCP client's requests carry the context's session, so the
client is built with no Helio headers; a block is read with ``helio.blocked()``.
"""

from __future__ import annotations

import asyncio
import json

from common import feedback, mark_lookup, next_call, options, say
from mcp import Client, MCPError

import helio
from helio import HelioContext


async def main() -> int:
    args = options(__doc__ or "")
    helio.instrument(proxy_urls=[args.proxy_url])
    async with HelioContext(args.sideband_url, args.session_id) as ctx, Client(args.proxy_url) as mcp:
        say("session", ctx.session_id)
        last: tuple[str, str] | None = None
        while (call := next_call(args.order_id, last)) is not None:
            tool, arguments = call
            try:
                result = await mcp.call_tool(tool, arguments)
            except MCPError as error:
                block = helio.blocked(error)
                if block is None:
                    raise
                last = (tool, feedback(block))
                continue
            answer = json.dumps(result.structured_content)
            say("called", f"{tool} {'error' if result.is_error else 'ok'} {answer}")
            if tool == "orders.lookup" and not result.is_error:
                await mark_lookup(ctx, result.structured_content)
            if tool == "process_refund" and not result.is_error:
                say("done", answer)
                return 0
            last = (tool, answer)
    say("failed", "the refund did not go through")
    return 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
