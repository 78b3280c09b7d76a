"""The server the official MCP conformance suite (``@modelcontextprotocol/conformance server``) tests.

Built with the official Python SDK (``mcp`` 2.x, ``MCPServer``), stateful streamable HTTP, and
implementing what each active server scenario asks for (``conformance list`` names them; the
requirements are in each scenario's description): fixed tools, resources and prompts with the
``test_*`` names, logging, progress, sampling and elicitation requests back to the client,
completion, resource subscriptions. The e2e test runs the suite against it directly and through
the proxy and compares the two results.

Run: ``python tests/peers/conformance_server.py --port 3001`` (serves ``/mcp`` on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.types import (
    AudioContent,
    Completion,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    JSONRPCMessage,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)

# A 1x1 red PNG and a 1-sample 8 kHz mono WAV: the smallest valid media the scenarios accept.
RED_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
SILENT_WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQIAAAAAAA=="


def build_server() -> MCPServer:
    server = MCPServer("helio-conformance-peer", version="1.0.0")
    subscriptions: set[str] = set()
    log_level: list[str] = ["info"]

    # -- tools --------------------------------------------------------------------------------

    @server.tool(description="Returns a fixed text.")
    def test_simple_text() -> list[TextContent]:
        return [TextContent(type="text", text="This is a simple text response for testing.")]

    @server.tool(description="Returns a 1x1 PNG image.")
    def test_image_content() -> list[ImageContent]:
        return [ImageContent(type="image", data=RED_PIXEL_PNG, mime_type="image/png")]

    @server.tool(description="Returns a tiny WAV clip.")
    def test_audio_content() -> list[AudioContent]:
        return [AudioContent(type="audio", data=SILENT_WAV, mime_type="audio/wav")]

    @server.tool(description="Returns an embedded text resource.")
    def test_embedded_resource() -> list[EmbeddedResource]:
        resource = TextResourceContents(
            uri="test://embedded-resource",
            mime_type="text/plain",
            text="This is an embedded resource content.",
        )
        return [EmbeddedResource(type="resource", resource=resource)]

    @server.tool(description="Returns text, an image and an embedded resource.")
    def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        resource = TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text=json.dumps({"test": "data", "value": 123}),
        )
        return [
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=RED_PIXEL_PNG, mime_type="image/png"),
            EmbeddedResource(type="resource", resource=resource),
        ]

    @server.tool(description="Sends three info log messages while it runs.")
    async def test_tool_with_logging(ctx: Context) -> list[TextContent]:
        await ctx.info("Tool execution started")
        await asyncio.sleep(0.05)
        await ctx.info("Tool processing data")
        await asyncio.sleep(0.05)
        await ctx.info("Tool execution completed")
        return [TextContent(type="text", text="Tool with logging executed successfully")]

    @server.tool(description="Always fails (isError: true).")
    def test_error_handling() -> str:
        raise RuntimeError("This tool intentionally returns an error for testing")

    @server.tool(description="Reports progress 0, 50 and 100 of 100.")
    async def test_tool_with_progress(ctx: Context) -> list[TextContent]:
        for done in (0, 50, 100):
            await ctx.report_progress(done, 100)
            if done < 100:
                await asyncio.sleep(0.05)
        return [TextContent(type="text", text="Tool with progress executed successfully")]

    @server.tool(description="Asks the client's LLM (sampling/createMessage).")
    async def test_sampling(prompt: str, ctx: Context) -> list[TextContent]:
        message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
        result = await ctx.session.create_message(
            [message], max_tokens=100, related_request_id=ctx.request_id
        )
        content = result.content
        text = (
            content.text if isinstance(content, TextContent) else json.dumps(content.model_dump(mode="json"))
        )
        return [TextContent(type="text", text=f"LLM response: {text}")]

    @server.tool(description="Asks the user for a username and an email (elicitation/create).")
    async def test_elicitation(message: str, ctx: Context) -> list[TextContent]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        }
        result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
        return [
            TextContent(type="text", text=f"User response: action={result.action}, content={result.content}")
        ]

    @server.tool(description="Elicitation whose schema has a default for every primitive type.")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> list[TextContent]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "default": True},
            },
        }
        result = await ctx.session.elicit_form(
            "Please review your details", schema, related_request_id=ctx.request_id
        )
        return [
            TextContent(
                type="text",
                text=f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}",
            )
        ]

    @server.tool(description="Elicitation with the five enum schema variants.")
    async def test_elicitation_sep1330_enums(ctx: Context) -> list[TextContent]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                "titledSingle": {
                    "type": "string",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                },
                "titledMulti": {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"},
                        ]
                    },
                },
            },
        }
        result = await ctx.session.elicit_form("Pick some options", schema, related_request_id=ctx.request_id)
        return [
            TextContent(
                type="text",
                text=f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}",
            )
        ]

    @server.tool(description="Tool with JSON Schema 2020-12 features")
    def json_schema_2020_12_tool(name: str | None = None, address: dict[str, Any] | None = None) -> str:
        return json.dumps({"name": name, "address": address})

    # The schema is the scenario's, verbatim: 2020-12 keywords the SDK would not generate itself.
    server._tool_manager.get_tool("json_schema_2020_12_tool").parameters = {  # pyright: ignore[reportPrivateUsage, reportOptionalMemberAccess]
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    }

    @server.tool(description="Closes its SSE stream mid-call; the client resumes with Last-Event-ID.")
    async def test_reconnection(ctx: Context) -> list[TextContent]:
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        return [TextContent(type="text", text="Reconnection test completed")]

    # -- resources ------------------------------------------------------------------------------

    @server.resource(
        "test://static-text",
        name="static-text",
        description="A static text resource.",
        mime_type="text/plain",
    )
    def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource(
        "test://static-binary", name="static-binary", description="A static PNG.", mime_type="image/png"
    )
    def static_binary() -> bytes:
        return base64.b64decode(RED_PIXEL_PNG)

    @server.resource(
        "test://watched-resource", name="watched-resource", description="A resource clients subscribe to."
    )
    def watched() -> str:
        return "watched"

    @server.resource(
        "test://template/{id}/data",
        name="template-data",
        description="A templated resource.",
        mime_type="application/json",
    )
    def template_data(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    # -- prompts --------------------------------------------------------------------------------

    @server.prompt(description="A prompt without arguments.")
    def test_simple_prompt() -> list[Message]:
        return [UserMessage(TextContent(type="text", text="This is a simple prompt for testing."))]

    @server.prompt(description="A prompt with two arguments.")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[Message]:
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(TextContent(type="text", text=text))]

    @server.prompt(description="A prompt embedding a resource.")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
        resource = TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        return [
            UserMessage(EmbeddedResource(type="resource", resource=resource)),
            UserMessage(TextContent(type="text", text="Please process the embedded resource above.")),
        ]

    @server.prompt(description="A prompt with an image.")
    def test_prompt_with_image() -> list[Message]:
        return [
            UserMessage(ImageContent(type="image", data=RED_PIXEL_PNG, mime_type="image/png")),
            UserMessage(TextContent(type="text", text="Please analyze the image above.")),
        ]

    # -- completion, logging, subscriptions ------------------------------------------------------

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion:
        candidates = ["paris", "park", "party"]
        values = [value for value in candidates if value.startswith(str(argument.value))]
        return Completion(values=values, total=len(values), has_more=False)

    lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]  (no public hook for these)

    async def set_level(_ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        log_level[0] = params.level
        return EmptyResult()

    async def subscribe(_ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        subscriptions.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(_ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        subscriptions.discard(str(params.uri))
        return EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    return server


class MemoryEventStore(EventStore):
    """Every event kept in memory, so a client can resume a closed stream (``Last-Event-ID``)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        found = [i for i, (event_id, _, _) in enumerate(self.events) if event_id == last_event_id]
        if not found:
            return None
        stream_id = self.events[found[0]][1]
        for event_id, stream, message in self.events[found[0] + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = build_server().streamable_http_app(event_store=MemoryEventStore(), retry_interval=100)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
