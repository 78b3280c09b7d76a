"""The refund agent with LangGraph and ``langchain-mcp-adapters`` (which needs the MCP SDK 1.x).

    python examples/agents/langgraph_agent.py --order-id A-1001

A two-node graph (model, tools) whose model is a scripted LangChain chat model (no LLM). The
adapters raise the MCP SDK's ``McpError`` for a block; the ``ToolNode``'s ``handle_tool_errors``
reads it with ``helio.blocked()`` and answers the model with Helio's feedback. A tool-call
interceptor marks the evidence once ``orders.lookup`` has succeeded, finding the context with
``helio.current_context()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from common import feedback, mark_lookup, next_call, options, say
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.interceptors import MCPToolCallRequest
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

import helio
from helio import HelioContext


class ScriptedChatModel(BaseChatModel):
    """Reads the last tool message and asks for the next call (``common.next_call``)."""

    order_id: str

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        last = messages[-1]
        told = (last.name or "", _text(last.content)) if isinstance(last, ToolMessage) else None
        call = next_call(self.order_id, told)
        if call is None:
            reply = AIMessage(content=told[1] if told else "nothing to do")
        else:
            reply = AIMessage(
                content="", tool_calls=[{"name": call[0], "args": call[1], "id": uuid.uuid4().hex}]
            )
        return ChatResult(generations=[ChatGeneration(message=reply)])


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


def on_tool_error(error: Exception) -> str:
    """What the model sees when a tool call fails: Helio's feedback for a block."""
    block = helio.blocked(error)
    if block is None:
        return f"The tool failed: {error}"
    return feedback(block)


async def mark_after_lookup(
    request: MCPToolCallRequest, handler: Callable[[MCPToolCallRequest], Awaitable[Any]]
) -> Any:
    result = await handler(request)
    if not getattr(result, "isError", False):
        say("called", f"{request.name} ok {json.dumps(result.structuredContent)}")
        ctx = helio.current_context()
        if request.name == "orders.lookup" and ctx is not None:
            await mark_lookup(ctx, result.structuredContent)
    return result


async def main() -> int:
    args = options(__doc__ or "")
    helio.instrument(proxy_urls=[args.proxy_url])
    client = MultiServerMCPClient(
        {"refunds": {"url": args.proxy_url, "transport": "streamable_http"}},
        tool_interceptors=[mark_after_lookup],
    )
    model = ScriptedChatModel(order_id=args.order_id)

    def think(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    async with HelioContext(args.sideband_url, args.session_id) as ctx:
        say("session", ctx.session_id)
        graph = StateGraph(MessagesState)
        graph.add_node("model", think)
        graph.add_node("tools", ToolNode(await client.get_tools(), handle_tool_errors=on_tool_error))
        graph.add_edge(START, "model")
        graph.add_conditional_edges("model", route, ["tools", END])
        graph.add_edge("tools", "model")
        state = await graph.compile().ainvoke({"messages": [("user", f"Refund order {args.order_id}.")]})
    output = _text(state["messages"][-1].content)
    with contextlib.suppress(ValueError):
        output = json.dumps(json.loads(output))  # the server's text is indented JSON
    if '"status": "refunded"' not in output:
        say("failed", output)
        return 1
    say("done", output)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
