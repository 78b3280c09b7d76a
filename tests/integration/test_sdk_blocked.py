"""``helio.blocked()`` on the exceptions each MCP stack really raises for the proxy's ``-32001``.

The real proxy (in process) blocks ``process_refund`` with ``dependency_missing`` until the
session's ``orders.lookup`` has succeeded; each client below calls it and the test hands what
it raised, or what its framework passed to the agent's error hook, to ``helio.blocked()``.
(LangGraph with langchain-mcp-adapters needs mcp 1.x: see tests/e2e/test_agent_examples.py.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Model, ModelResponse, RunContextWrapper, Runner, Usage
from agents.mcp import MCPServerStreamableHttp
from mcp import Client, MCPError
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText
from pydantic_ai import ModelRetry
from pydantic_ai.mcp import MCPToolset

import helio
from helio import Blocked, HelioContext
from tests.integration.test_sdk_attribution import proxy

EXPECTED = {
    "reason": "dependency_missing",
    "rule": "refund-needs-lookup",
    "rule_index": 0,
    "retry_allowed": True,
    "missing_dependencies": ["orders.lookup"],
    "missing_evidence": [],
}


def summary(block: Blocked | None) -> dict[str, Any]:
    assert block is not None
    return {key: getattr(block, key) for key in EXPECTED}


@pytest.fixture(autouse=True)
def _uninstrumented() -> Iterator[None]:
    yield
    helio.uninstrument()


@asynccontextmanager
async def blocking_proxy(tmp_path: Path) -> AsyncIterator[str]:
    """The proxy's MCP URL, instrumented, inside a HelioContext (gates need a session)."""
    async with proxy(tmp_path / "audit.db") as app:
        helio.instrument(proxy_urls=[app.mcp_url])
        async with HelioContext("http://127.0.0.1:9", "blocked-test", token=""):
            yield app.mcp_url


async def test_the_official_clients_mcp_error_is_a_block(tmp_path: Path) -> None:
    async with blocking_proxy(tmp_path) as url, Client(url) as mcp:
        with pytest.raises(MCPError) as raised:
            await mcp.call_tool("process_refund", {"order_id": "A-1001"})
        with pytest.raises(MCPError) as not_a_block:  # relayed from the server, not governed
            await mcp.read_resource("orders://no-such-resource")
    assert summary(helio.blocked(raised.value)) == EXPECTED
    block = helio.blocked(raised.value)
    assert block is not None
    assert block.data["blocked"] is True
    assert helio.blocked(raised.value.error) == block  # the ErrorData alone
    assert helio.blocked(raised.value.error.model_dump()) == block  # and as a dict
    assert not_a_block.value.code != -32001
    assert helio.blocked(not_a_block.value) is None


@pytest.mark.parametrize(("behaviour", "raised_type"), [("retry", ModelRetry), ("error", MCPError)])
async def test_pydantic_ai_mcp_toolset_errors_are_blocks(
    behaviour: Any, raised_type: type[Exception], tmp_path: Path
) -> None:
    async with blocking_proxy(tmp_path) as url:
        toolset = MCPToolset(url, tool_error_behavior=behaviour)
        async with toolset:
            with pytest.raises(raised_type) as raised:
                await toolset.direct_call_tool("process_refund", {"order_id": "A-1001"})
    assert summary(helio.blocked(raised.value)) == EXPECTED


async def test_the_openai_agents_servers_call_tool_error_is_a_block(tmp_path: Path) -> None:
    async with blocking_proxy(tmp_path) as url, MCPServerStreamableHttp(params={"url": url}) as server:
        with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever the SDK raises is the point
            await server.call_tool("process_refund", {"order_id": "A-1001"})
    assert summary(helio.blocked(raised.value)) == EXPECTED


class OneCall(Model):
    """Calls process_refund once, then answers with what the tool returned."""

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        items = [item if isinstance(item, dict) else item.model_dump() for item in input]
        outputs = [item["output"] for item in items if item.get("type") == "function_call_output"]
        if outputs:
            text = ResponseOutputText(type="output_text", text=str(outputs[-1]), annotations=[])
            message = ResponseOutputMessage(
                id="m", type="message", role="assistant", status="completed", content=[text]
            )
            return ModelResponse(output=[message], usage=Usage(), response_id=None)
        call = ResponseFunctionToolCall(
            type="function_call",
            id="fc",
            call_id="c1",
            name="process_refund",
            arguments='{"order_id": "A-1001"}',
        )
        return ModelResponse(output=[call], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def test_the_error_an_openai_agents_run_hands_to_failure_error_function_is_a_block(
    tmp_path: Path,
) -> None:
    seen: list[Exception] = []

    def on_tool_error(context: RunContextWrapper[Any], error: Exception) -> str:
        seen.append(error)
        block = helio.blocked(error)
        return json.dumps({"reason": block.reason if block else None})

    async with (
        blocking_proxy(tmp_path) as url,
        MCPServerStreamableHttp(params={"url": url}, failure_error_function=on_tool_error) as server,
    ):
        agent = Agent(name="refunds", model=OneCall(), mcp_servers=[server])
        run = await Runner.run(agent, "Refund A-1001.")
    assert len(seen) == 1
    assert summary(helio.blocked(seen[0])) == EXPECTED
    assert json.loads(str(run.final_output)) == {"reason": "dependency_missing"}
