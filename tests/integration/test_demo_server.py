"""The demo MCP server answers bad arguments the way the MCP spec wants tool errors reported.

Driven by the official ``mcp`` client over stdio, with the server's stderr kept in a file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

DEMO = StdioServerParameters(
    command=sys.executable, args=["-m", "helio_proxy.demo.server", "--transport", "stdio"]
)


def _text(result: CallToolResult) -> str:
    first = result.content[0]
    assert isinstance(first, TextContent)
    return first.text


async def test_bad_arguments_are_tool_errors_with_the_reason_and_no_traceback(tmp_path: Path) -> None:
    """Tool execution errors are results with ``isError: true`` (MCP spec, tools: error handling)."""
    errlog = tmp_path / "demo-stderr.log"
    with errlog.open("w") as sink:
        async with Client(stdio_client(DEMO, errlog=sink)) as client:
            missing = await client.call_tool("lookup_order", {"order_id": "nope"})
            negative = await client.call_tool("create_payment", {"amount": -5})
            zero = await client.call_tool("create_payment", {"amount": 0})
            not_a_number = await client.call_tool("create_payment", {"amount": "lots"})
            found = await client.call_tool("lookup_order", {"order_id": "A-1001"})
            paid = await client.call_tool("create_payment", {"amount": 12.5})
    assert missing.is_error is True
    assert _text(missing) == (
        "Error executing tool lookup_order: no order 'nope'; known orders: A-1001, A-1002"
    )
    assert negative.is_error is True
    assert _text(negative) == (
        "Error executing tool create_payment: amount must be a positive finite number, got -5.0"
    )
    assert zero.is_error is True
    assert "positive finite number" in _text(zero)
    assert not_a_number.is_error is True
    assert "amount" in _text(not_a_number)
    assert found.is_error is False
    assert paid.is_error is False
    assert paid.structured_content == {
        "status": "created",
        "amount": "12.5",
        "currency": "GBP",
        "recipient": "acme",
    }
    assert "Traceback" not in errlog.read_text()
