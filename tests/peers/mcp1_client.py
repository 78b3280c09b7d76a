"""An MCP client built with the official Python SDK 1.x (``ClientSession`` over streamable HTTP).

An independent client peer for the protocol-era tests, run as a subprocess in its own virtual
environment (``.tools/mcp1``). It initializes, lists the tools, calls ``get_weather`` and then
``delete_user`` (which the test's policy denies), and prints one JSON object with what it saw.

Run: ``.tools/mcp1/bin/python tests/peers/mcp1_client.py <url>``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from importlib.metadata import version
from typing import Any

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError


async def main(url: str) -> dict[str, Any]:
    async with (
        streamablehttp_client(url) as (read, write, _session_id),
        ClientSession(read, write) as session,
    ):
        initialized = await session.initialize()
        tools = await session.list_tools()
        weather = await session.call_tool("get_weather", {"city": "Oslo"})
        try:
            await session.call_tool("delete_user", {"user_id": "u1"})
            denied: dict[str, Any] = {"code": None}
        except McpError as exc:
            denied = {"code": exc.error.code, "data": exc.error.data}
    return {
        "sdk": version("mcp"),
        "protocol_version": initialized.protocolVersion,
        "tools": sorted(tool.name for tool in tools.tools),
        "weather": [block.model_dump(mode="json") for block in weather.content],
        "weather_is_error": weather.isError,
        "denied": denied,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
