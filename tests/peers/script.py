"""One client session over every feature the everything server offers, as a comparable transcript.

``script_client(target)`` builds an official ``mcp`` :class:`~mcp.Client` whose sampling,
elicitation and logging callbacks record what they receive; ``run_script(client)`` connects it
(``initialize``), lists and calls everything, and returns a normalised transcript. Run it
directly and through the proxy: the two transcripts must be equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from mcp import Client, MCPError
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import StdioServerParameters
from mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    LoggingMessageNotificationParams,
    TextContent,
)

SAMPLED_TEXT = "a haiku about proxies"
ELICITED = {"name": "Ada", "subscribe": True}


@dataclass
class Recorder:
    """What the client's callbacks saw, in order."""

    logs: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    elicitations: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    samplings: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])

    async def on_log(self, params: LoggingMessageNotificationParams) -> None:
        self.logs.append({"level": params.level, "logger": params.logger, "data": params.data})

    async def on_elicit(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.elicitations.append(params.model_dump(mode="json", by_alias=True, exclude_none=True))
        return ElicitResult(action="accept", content=dict(ELICITED))

    async def on_sample(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult:
        self.samplings.append(params.model_dump(mode="json", by_alias=True, exclude_none=True))
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text=SAMPLED_TEXT), model="test-model"
        )


def script_client(
    target: str | StdioServerParameters | Any, *, mode: str = "legacy", **kwargs: Any
) -> Client:
    """A client for :func:`run_script`: its callbacks record into a :class:`Recorder`."""
    recorder = Recorder()
    return Client(
        target,
        mode=mode,
        sampling_callback=recorder.on_sample,
        elicitation_callback=recorder.on_elicit,
        logging_callback=recorder.on_log,
        read_timeout_seconds=20,
        **kwargs,
    )


def _recorder(client: Client) -> Recorder:
    owner = getattr(client.sampling_callback, "__self__", None)
    if not isinstance(owner, Recorder):
        raise TypeError("build the client with script_client()")
    return owner


def _result(result: Any) -> dict[str, Any]:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"meta"})


async def run_script(client: Client) -> dict[str, Any]:
    """Connect ``client`` (from :func:`script_client`) and exercise everything; the transcript."""
    recorder = _recorder(client)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    transcript: dict[str, Any] = {}
    async with client:
        transcript["server"] = {
            "info": client.server_info.model_dump(mode="json", exclude_none=True)
            if client.server_info
            else None,
            "protocol_version": client.protocol_version,
            "capabilities": client.server_capabilities.model_dump(
                mode="json", by_alias=True, exclude_none=True
            ),
            "instructions": client.instructions,
        }
        tools = await client.list_tools()
        transcript["tools"] = sorted(
            (tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools.tools),
            key=lambda tool: tool["name"],
        )
        transcript["echo"] = _result(await client.call_tool("echo", {"text": "héllo\nworld"}))
        transcript["progress_and_log"] = _result(
            await client.call_tool("progress_and_log", {"steps": 3}, progress_callback=on_progress)
        )
        transcript["progress"] = list(progress)
        transcript["logs"] = list(recorder.logs)
        transcript["elicit"] = _result(await client.call_tool("elicit", {"question": "Who are you?"}))
        transcript["elicitations"] = list(recorder.elicitations)
        transcript["sample"] = _result(await client.call_tool("sample", {"prompt": "write a haiku"}))
        transcript["samplings"] = list(recorder.samplings)
        transcript["fail"] = _result(await client.call_tool("fail", {"reason": "on purpose"}))
        resources = await client.list_resources()
        transcript["resources"] = [_result(r) for r in resources.resources]
        transcript["greeting"] = _result(await client.read_resource("everything://greeting"))
        prompts = await client.list_prompts()
        transcript["prompts"] = [_result(p) for p in prompts.prompts]
        transcript["greet"] = _result(await client.get_prompt("greet", {"name": "Grace"}))
        # An unknown tool is refused either way: by the server (an error result), or by the proxy
        # before the server sees it (tool_not_found, docs/data-plane.md); other answers differ.
        try:
            answer = await client.call_tool("no_such_tool", {})
            unknown = _result(answer)
            first = answer.content[0] if answer.content else None
            text = str(getattr(first, "text", ""))
            refused = answer.is_error and text.startswith("Unknown tool")
            transcript["unknown_tool"] = "refused" if refused else unknown
        except MCPError as exc:  # servers differ: an error result, or a JSON-RPC error
            data: Any = exc.error.data
            reason: object = cast(dict[str, Any], data).get("reason") if isinstance(data, dict) else None
            refused = exc.code == -32001 and reason == "tool_not_found"
            transcript["unknown_tool"] = "refused" if refused else {"code": exc.code}
    return transcript
