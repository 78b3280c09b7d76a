"""An MCP server built with the official Python SDK 1.x (``FastMCP``, streamable HTTP, stateful).

An independent upstream peer for the protocol-era tests: it speaks only the ``initialize`` era
(up to 2025-11-25). It runs in its own virtual environment (``.tools/mcp1``, made by
``tests/peers/tooling.py``), never in the project's, which has ``mcp`` 2.x.

Run: ``.tools/mcp1/bin/python tests/peers/mcp1_server.py --port 3001`` (serves ``/mcp``).
"""

from __future__ import annotations

import argparse

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = FastMCP("mcp1-peer", host="127.0.0.1", port=args.port, log_level="WARNING")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True, destructiveHint=False))
    def get_weather(city: str) -> str:
        """Current weather for a city (canned data)."""
        return f"{city}: 18°C, light rain"

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
    def delete_user(user_id: str) -> str:
        """Delete a user account (pretend)."""
        return f"deleted user {user_id}"

    server.run(transport="streamable-http")


if __name__ == "__main__":
    main()
