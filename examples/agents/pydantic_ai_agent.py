"""The refund agent with pydantic-ai: an ``Agent`` with the proxy as an ``MCPToolset``.

    python examples/agents/pydantic_ai_agent.py --order-id A-1001

The model is pydantic-ai's ``FunctionModel`` playing a script (no LLM). pydantic-ai turns an MCP
error into ``ModelRetry`` raised from the MCP SDK's ``MCPError``; the toolset's
``process_tool_call`` hook reads it with ``helio.blocked()`` and retries with Helio's feedback,
and marks the evidence once ``orders.lookup`` has succeeded.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from common import feedback, mark_lookup, next_call, options, say
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.mcp import CallToolFunc, MCPToolset
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

import helio
from helio import HelioContext


def scripted_model(order_id: str) -> FunctionModel:
    """Reads the last tool answer (a result or Helio's feedback) and asks for the next call."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last: tuple[str, str] | None = None
        request = messages[-1]
        if isinstance(request, ModelRequest):
            for part in request.parts:
                if isinstance(part, ToolReturnPart | RetryPromptPart) and part.tool_name is not None:
                    content = part.content
                    last = (part.tool_name, content if isinstance(content, str) else json.dumps(content))
        call = next_call(order_id, last)
        if call is None:
            return ModelResponse(parts=[TextPart(last[1] if last else "nothing to do")])
        return ModelResponse(parts=[ToolCallPart(call[0], call[1])])

    return FunctionModel(respond)


async def governed(
    ctx: RunContext[HelioContext], call_tool: CallToolFunc, name: str, args: dict[str, Any]
) -> Any:
    """Every MCP tool call of the agent goes through here."""
    try:
        result = await call_tool(name, args)
    except ModelRetry as error:
        block = helio.blocked(error)
        if block is None:
            raise
        raise ModelRetry(feedback(block)) from error  # the model sees what to fix
    say("called", f"{name} ok {json.dumps(result)}")
    if name == "orders.lookup":
        await mark_lookup(ctx.deps, result)
    return result


async def main() -> int:
    args = options(__doc__ or "")
    helio.instrument(proxy_urls=[args.proxy_url])
    toolset = MCPToolset(args.proxy_url, process_tool_call=governed, max_retries=3)
    agent = Agent(scripted_model(args.order_id), deps_type=HelioContext, toolsets=[toolset])
    async with HelioContext(args.sideband_url, args.session_id) as ctx:
        say("session", ctx.session_id)
        run = await agent.run(f"Refund order {args.order_id}.", deps=ctx)
    answer = json.loads(run.output) if run.output.startswith("{") else {}
    if answer.get("status") != "refunded":
        say("failed", run.output)
        return 1
    say("done", run.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
