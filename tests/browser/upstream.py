"""The browser tests' MCP upstream (official ``mcp`` SDK): the demo's weather and payment tools, with
the weather tool's description taken from ``--weather-description`` so a restart can change it
(tool definition drift).

Run: ``python -m tests.browser.upstream --port N [--weather-description TEXT]``.
"""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer

from helio_proxy.demo.server import DESTRUCTIVE, READ_ONLY, WRITES


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--weather-description", default="Current weather for a city (canned data).")
    args = parser.parse_args()
    server = MCPServer("browser-upstream", version="1.0.0", log_level="WARNING")

    @server.tool(annotations=READ_ONLY, description=args.weather_description)
    def get_weather(city: str) -> str:
        return f"{city}: 18°C, light rain"

    @server.tool(annotations=WRITES)
    def create_payment(amount: float, recipient: str) -> dict[str, str]:
        """Pay someone (waits for an operator's approval behind Helio)."""
        return {"status": "created", "amount": str(amount), "recipient": recipient}

    @server.tool(annotations=DESTRUCTIVE)
    def delete_user(user_id: str) -> str:
        """Delete a user (blocked by policy behind Helio)."""
        return f"deleted {user_id}"

    server.run("streamable-http", host="127.0.0.1", port=args.port, stateless_http=True)


if __name__ == "__main__":
    main()
