"""The refund agent with the OpenAI Agents SDK: an ``Agent`` with the proxy as an ``MCPServerStreamableHttp``.

    python examples/agents/openai_agents_agent.py --order-id A-1001

The model is a scripted ``Model`` (no LLM, no key). The Agents SDK hands an MCP error to the
server's ``failure_error_function``, whose answer the model sees as the tool's output: that is
where ``helio.blocked()`` turns a block into feedback. A ``RunHooks.on_tool_end`` marks the
evidence once ``orders.lookup`` has succeeded.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from agents import Agent, Model, ModelResponse, RunContextWrapper, RunHooks, Runner, Tool, Usage
from agents.mcp import MCPServerStreamableHttp
from common import feedback, mark_lookup, next_call, options, say
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

import helio
from helio import HelioContext


class ScriptedModel(Model):
    """Reads the last tool output in the conversation and asks for the next call."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        items = [] if isinstance(input, str) else list(input)
        names = {
            item["call_id"]: item["name"]
            for item in map(_plain, items)
            if item.get("type") == "function_call"
        }
        outputs = [item for item in map(_plain, items) if item.get("type") == "function_call_output"]
        last = (names[outputs[-1]["call_id"]], str(outputs[-1]["output"])) if outputs else None
        call = next_call(self.order_id, last)
        if call is None:
            text = ResponseOutputText(type="output_text", text=last[1] if last else "", annotations=[])
            message = ResponseOutputMessage(
                id="msg", type="message", role="assistant", status="completed", content=[text]
            )
            return ModelResponse(output=[message], usage=Usage(), response_id=None)
        tool_call = ResponseFunctionToolCall(
            type="function_call",
            id="fc",
            call_id=uuid.uuid4().hex,
            name=call[0],
            arguments=json.dumps(call[1]),
        )
        return ModelResponse(output=[tool_call], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("this example runs without streaming")


def _plain(item: Any) -> dict[str, Any]:
    return item if isinstance(item, dict) else item.model_dump()


def on_tool_error(context: RunContextWrapper[Any], error: Exception) -> str:
    """What the model sees when a tool call fails: Helio's feedback for a block."""
    block = helio.blocked(error)
    if block is None:
        return f"The tool failed: {error}"
    return feedback(block)


class MarkEvidence(RunHooks[HelioContext]):
    async def on_tool_end(
        self, context: RunContextWrapper[HelioContext], agent: Agent[HelioContext], tool: Tool, result: object
    ) -> None:
        if tool.name == "orders.lookup":
            say("called", f"orders.lookup ok {result}")
            await mark_lookup(context.context, json.loads(str(result)))
        elif tool.name == "process_refund" and "blocked" not in str(result):
            say("called", f"process_refund ok {result}")


async def main() -> int:
    args = options(__doc__ or "")
    helio.instrument(proxy_urls=[args.proxy_url])
    async with (
        HelioContext(args.sideband_url, args.session_id) as ctx,
        MCPServerStreamableHttp(
            params={"url": args.proxy_url}, failure_error_function=on_tool_error, use_structured_content=True
        ) as proxy,
    ):
        say("session", ctx.session_id)
        agent = Agent[HelioContext](name="refunds", model=ScriptedModel(args.order_id), mcp_servers=[proxy])
        run = await Runner.run(agent, f"Refund order {args.order_id}.", context=ctx, hooks=MarkEvidence())
    output = str(run.final_output)
    if '"status": "refunded"' not in output:
        say("failed", output)
        return 1
    say("done", output)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
