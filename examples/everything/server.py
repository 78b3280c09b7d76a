"""An MCP server exercising everything the proxy must relay (official ``mcp`` SDK, MCPServer).

Tools: ``echo``; ``progress_and_log`` (progress and log notifications, then a result);
``elicit`` (an elicitation round trip); ``sample`` (a sampling round trip via the client);
``fail`` (a tool error: ``isError: true``). One resource (``everything://greeting``) and one
prompt (``greet``).

Run: ``python examples/everything/server.py --transport stdio|streamable-http|sse
[--port N] [--json-response] [--stateless]``. Nothing is printed on stdout but the protocol.
"""

from __future__ import annotations

import argparse
import os
import warnings

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import SamplingMessage, TextContent, ToolAnnotations
from pydantic import BaseModel

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)


class Contact(BaseModel):
    """What ``elicit`` asks the user for."""

    name: str
    subscribe: bool = False


def build_server() -> MCPServer:
    server = MCPServer("everything", version="2.0.0", instructions="Every MCP feature Helio relays.")

    @server.tool(annotations=READ_ONLY)
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool(annotations=READ_ONLY)
    async def progress_and_log(steps: int, ctx: Context) -> str:
        """Report progress and send a log message at each step, then return."""
        steps = max(1, min(steps, 10))
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}")
            with warnings.catch_warnings():  # logging is deprecated in 2026-07-28, not in the eras we test
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await ctx.info(f"log {step}", logger_name="everything")
        return f"done after {steps} steps"

    @server.tool()
    async def elicit(question: str, ctx: Context) -> str:
        """Ask the user (elicitation) and report the answer."""
        answer = await ctx.elicit(question, Contact)
        if answer.action == "accept":
            return f"accepted: {answer.data.name} (subscribe={answer.data.subscribe})"
        return answer.action

    @server.tool()
    async def sample(prompt: str, ctx: Context) -> str:
        """Ask the client's model (sampling) and report what it said."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            result = await ctx.session.create_message(
                [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
                max_tokens=50,
                related_request_id=ctx.request_id,
            )
        content = result.content
        text = content.text if isinstance(content, TextContent) else str(content)
        return f"model said: {text} ({result.model})"

    @server.tool()
    def fail(reason: str = "boom") -> str:
        """Always a tool error (the result has isError: true)."""
        raise ToolError(reason)

    @server.tool(annotations=READ_ONLY)
    def whoami(names: list[str] | None = None, parent: bool = False) -> dict[str, str | None]:
        """This process's id and the named environment variables (what a child inherited); with
        ``parent``, the named variables as read from the parent's ``/proc/PID/environ`` instead
        (``"<unreadable>"`` when the parent forbids it)."""
        environ: dict[str, str] = dict(os.environ)
        if parent:
            try:
                with open(f"/proc/{os.getppid()}/environ", "rb") as handle:
                    raw = handle.read()
            except OSError:
                return {"pid": str(os.getpid()), **dict.fromkeys(names or [], "<unreadable>")}
            pairs = (entry.decode(errors="replace").partition("=") for entry in raw.split(b"\0") if entry)
            environ = {name: value for name, _, value in pairs}
        found: dict[str, str | None] = {name: environ.get(name) for name in names or []}
        return {"pid": str(os.getpid()), **found}

    @server.resource("everything://greeting", name="greeting", mime_type="text/plain")
    def greeting() -> str:
        """A fixed greeting."""
        return "hello from everything"

    @server.prompt()
    def greet(name: str) -> str:
        """A prompt that greets someone."""
        return f"Please greet {name} warmly."

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description="An MCP server with every feature Helio relays.")
    parser.add_argument("--transport", choices=["stdio", "streamable-http", "sse"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--json-response", action="store_true", help="streamable HTTP: JSON bodies, not SSE")
    parser.add_argument("--stateless", action="store_true", help="streamable HTTP: no sessions")
    args = parser.parse_args()
    server = build_server()
    server.settings.log_level = "WARNING"
    if args.transport == "stdio":
        server.run("stdio")
    elif args.transport == "sse":
        server.run("sse", host=args.host, port=args.port)
    else:
        server.run(
            "streamable-http",
            host=args.host,
            port=args.port,
            json_response=args.json_response,
            stateless_http=args.stateless,
        )


if __name__ == "__main__":
    main()
