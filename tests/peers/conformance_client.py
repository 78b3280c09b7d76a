"""The client the official MCP conformance suite (``@modelcontextprotocol/conformance client``) tests.

The suite starts a scenario server, appends its URL to this command and names the scenario in
``MCP_CONFORMANCE_SCENARIO``. The client is the official Python SDK's ``Client`` (``mcp`` 2.x,
auto mode). With ``--via-proxy`` it first starts a Helio proxy in this process, upstream = the
scenario server, and talks to the proxy instead, so the suite judges the proxied exchange.

Run: ``python tests/peers/conformance_client.py [--via-proxy] <server-url>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult

ROOT = Path(__file__).resolve().parents[2]


async def accept_with_defaults(_context: Any, params: ElicitRequestParams) -> ElicitResult:
    """Accept every form elicitation with the defaults its schema declares."""
    schema: dict[str, Any] = getattr(params, "requested_schema", None) or {}
    properties: dict[str, Any] = schema.get("properties") or {}
    content = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
    return ElicitResult(action="accept", content=content)


async def run_scenario(url: str, scenario: str) -> None:
    async with Client(url, mode="auto", elicitation_callback=accept_with_defaults) as client:
        if scenario == "initialize":
            await client.list_tools()
        elif scenario == "tools_call":
            await client.list_tools()
            await client.call_tool("add_numbers", {"a": 5, "b": 3})
        elif scenario == "elicitation-sep1034-client-defaults":
            await client.call_tool("test_client_elicitation_defaults", {})
        elif scenario == "sse-retry":
            await client.call_tool("test_reconnection", {})
        else:
            raise SystemExit(f"conformance_client: no behaviour for scenario {scenario!r}")


@asynccontextmanager
async def proxied(url: str) -> AsyncIterator[str]:
    """A Helio proxy in this process (the test harness's), upstream ``url``; yields its MCP URL."""
    sys.path.insert(0, str(ROOT))
    from tests.harness import proxy_config, run_proxy  # imported only here: it loads the whole proxy

    async with run_proxy(proxy_config(url)) as app:
        yield app.mcp_url


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--via-proxy", action="store_true")
    parser.add_argument("url")
    args = parser.parse_args()
    scenario = os.environ["MCP_CONFORMANCE_SCENARIO"]
    if not args.via_proxy:
        await run_scenario(args.url, scenario)
        return
    async with proxied(args.url) as proxy_url:
        await run_scenario(proxy_url, scenario)


if __name__ == "__main__":
    asyncio.run(main())
