"""The data plane through the real proxy, between the official MCP client and typed MCP servers:
schema enforcement, unknown tools, content scanning and upstream credentials (issue 21)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import sys
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from mcp import Client
from mcp.server.mcpserver import MCPServer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from helio_proxy.app import HelioApp
from helio_proxy.config import LoadedConfig, parse_config_text
from tests.harness import EVERYTHING_SERVER, audit_records, run_proxy, serve_asgi, stdio_proxy_config

TEST_AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
"""AWS's documented example access key id."""
TEST_CARD = "4111 1111 1111 1111"
"""The well-known Visa test number (passes Luhn)."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Stats(BaseModel):
    count: int


def build_upstream() -> MCPServer:
    server = MCPServer("data-plane-upstream")

    @server.tool()
    def create_payment(amount: float, currency: str) -> str:
        """Pay someone."""
        return f"paid {amount} {currency}"

    @server.tool()
    def stats() -> Stats:
        """Counts."""
        return Stats(count=42)

    @server.tool()
    def fetch_record(record_id: str) -> str:
        """A customer record."""
        return f"record {record_id}: aws key {TEST_AWS_KEY}, card {TEST_CARD}, ok"

    return server


@dataclass
class Seen:
    """What reached the upstream over HTTP."""

    calls: list[str] = field(default_factory=list[str])
    authorizations: list[str | None] = field(default_factory=list[str | None])
    api_keys: list[str | None] = field(default_factory=list[str | None])


class Recording:
    """ASGI wrapper: records each tools/call and the Authorization header; optionally demands a token."""

    def __init__(self, app: Any, seen: Seen, accept: Callable[[str | None], bool] | None = None) -> None:
        self.app = app
        self.seen = seen
        self.accept = accept

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers = {k.decode().lower(): v.decode() for k, v in raw_headers}
        authorization = headers.get("authorization")
        self.seen.authorizations.append(authorization)
        self.seen.api_keys.append(headers.get("x-api-key"))
        if self.accept is not None and not self.accept(authorization):
            await send(
                {"type": "http.response.start", "status": 401, "headers": [(b"www-authenticate", b"Bearer")]}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        with contextlib.suppress(ValueError):
            payload: Any = json.loads(body or b"null")
            if isinstance(payload, dict) and payload.get("method") == "tools/call":  # pyright: ignore[reportUnknownMemberType]
                self.seen.calls.append(str(payload["params"]["name"]))  # pyright: ignore[reportUnknownArgumentType]
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@dataclass
class Stack:
    upstream: MCPServer
    app: HelioApp
    seen: Seen
    audit_path: Path

    @property
    def url(self) -> str:
        return self.app.mcp_url


@contextlib.asynccontextmanager
async def proxy_stack(
    extra: str = "",
    *,
    upstream_keys: str = "",
    environ: dict[str, str] | None = None,
    accept: Callable[[str | None], bool] | None = None,
    prepare: Callable[[MCPServer], None] | None = None,
    legacy_sse: bool = False,
) -> AsyncGenerator[Stack]:
    upstream = build_upstream()
    if prepare is not None:
        prepare(upstream)
    seen = Seen()
    audit_path = Path(tempfile.mkdtemp(prefix="helio-dp-")) / "audit.db"
    if legacy_sse:
        mcp_app, path, upstream_keys = upstream.sse_app(), "/sse", ", transport: sse" + upstream_keys
    else:
        mcp_app, path = upstream.streamable_http_app(stateless_http=True, json_response=True), "/mcp"
    async with serve_asgi(Recording(mcp_app, seen, accept)) as base:
        text = (
            "version: '1'\n"
            f"upstream: {{url: '{base}{path}'{upstream_keys}}}\n"
            "listen: {port: 0}\n"
            f"audit: {{path: '{audit_path}'}}\n"
            "dashboard: {enabled: false}\n" + extra
        )
        loaded = LoadedConfig(
            config=parse_config_text(text),
            path=Path("helio.yaml"),
            sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
        app = HelioApp(loaded, out=io.StringIO(), environ=environ or {}, hot_reload=False)
        async with asyncio.timeout(10):
            await app.start()
        stack = Stack(upstream, app, seen, audit_path)
        try:
            yield stack
        finally:
            async with asyncio.timeout(10):
                await app.stop()


async def raw_call(
    url: str, tool: str, arguments: dict[str, Any], *, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(
            url, json=body, headers={"accept": "application/json, text/event-stream", **(headers or {})}
        )
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


def tool_records(stack: Stack, tool: str) -> list[dict[str, Any]]:
    return audit_records(stack.audit_path, tool=tool)


# -- schema enforcement -------------------------------------------------------------------------


async def test_a_wrong_typed_argument_is_blocked_with_invalid_arguments_and_its_path() -> None:
    async with proxy_stack() as stack:
        answer = await raw_call(stack.url, "create_payment", {"amount": "5000", "currency": "GBP"})
        calls = list(stack.seen.calls)
    error = answer["error"]
    assert error["code"] == -32001
    assert error["data"]["reason"] == "invalid_arguments"
    assert error["data"]["retry_allowed"] is True
    assert error["data"]["errors"] == [
        {"path": "$.amount", "expected": '"5000" is not of type "number"', "keyword": "type"}
    ]
    assert calls == []
    (record,) = tool_records(stack, "create_payment")
    assert record["block_reason"] == "invalid_arguments"
    assert record["metadata"]["data_plane"]["input_schema"]["errors"][0]["path"] == "$.amount"


async def test_a_correct_call_passes_through_the_official_client() -> None:
    async with proxy_stack() as stack, Client(stack.url) as client:
        result = await client.call_tool("create_payment", {"amount": 5000, "currency": "GBP"})
    assert result.is_error is False
    assert result.content[0].text == "paid 5000.0 GBP"  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    assert stack.seen.calls == ["create_payment"]


async def test_warn_mode_forwards_a_wrong_typed_argument_and_records_the_errors() -> None:
    async with proxy_stack("data_plane: {input_schema: warn}\n") as stack:
        answer = await raw_call(stack.url, "create_payment", {"amount": "5000", "currency": "GBP"})
    assert answer["result"]["isError"] is False
    (record,) = tool_records(stack, "create_payment")
    assert record["block_reason"] is None
    assert record["metadata"]["data_plane"]["input_schema"]["mode"] == "warn"


def _stricter_output_schema(server: MCPServer) -> None:
    """Advertise an outputSchema the tool's results break (count is 42)."""
    tool = server._tool_manager.get_tool("stats")  # pyright: ignore[reportPrivateUsage]
    assert tool is not None
    schema = dict(tool.fn_metadata.output_schema or {})
    schema["properties"] = {"count": {"type": "integer", "maximum": 10}}
    tool.fn_metadata.output_schema = schema


async def test_a_result_that_breaks_its_output_schema_is_withheld_and_audited() -> None:
    async with proxy_stack(prepare=_stricter_output_schema) as stack:
        answer = await raw_call(stack.url, "stats", {})
    assert stack.seen.calls == ["stats"]
    error = answer["error"]
    assert (error["code"], error["data"]["reason"]) == (-32001, "invalid_result")
    assert error["data"]["errors"][0]["path"] == "$.count"
    (record,) = tool_records(stack, "stats")
    assert record["metadata"]["data_plane"]["output_schema"]["errors"][0]["keyword"] == "maximum"
    assert record["block_reason"] == "invalid_result"
    assert record["success"] is False


async def test_output_schema_in_warn_mode_relays_the_result_and_flags_it() -> None:
    async with proxy_stack("data_plane: {output_schema: warn}\n", prepare=_stricter_output_schema) as stack:
        answer = await raw_call(stack.url, "stats", {})
    assert answer["result"]["structuredContent"] == {"count": 42}
    (record,) = tool_records(stack, "stats")
    assert record["metadata"]["data_plane"]["output_schema"]["mode"] == "warn"
    assert record["block_reason"] is None


# -- unknown tools ------------------------------------------------------------------------------


async def test_an_unlisted_tool_is_refused_without_reaching_the_upstream() -> None:
    async with proxy_stack() as stack:
        answer = await raw_call(stack.url, "drop_database", {})
        calls = list(stack.seen.calls)
    assert answer["error"]["data"]["reason"] == "tool_not_found"
    assert answer["error"]["data"]["tool"] == "drop_database"
    assert calls == []
    assert stack.app.gateway.dataplane is not None
    assert stack.app.gateway.dataplane.stats.blocks["tool_not_found"] == 1
    assert stack.app.gateway.dataplane is not None
    assert stack.app.gateway.dataplane.inventory.refreshes == 1
    (record,) = tool_records(stack, "drop_database")
    assert record["block_reason"] == "tool_not_found"


async def test_a_tool_added_upstream_is_callable_without_a_restart() -> None:
    async with proxy_stack() as stack:
        refused = await raw_call(stack.url, "late_tool", {"x": 1})

        @stack.upstream.tool()
        def late_tool(x: int) -> str:  # pyright: ignore[reportUnusedFunction]
            """Added after the proxy started (a server would send notifications/tools/list_changed)."""
            return f"late {x}"

        answer = await raw_call(stack.url, "late_tool", {"x": 2})
        wrong = await raw_call(stack.url, "late_tool", {"x": "two"})
    assert refused["error"]["data"]["reason"] == "tool_not_found"
    assert answer["result"]["content"][0]["text"] == "late 2"
    assert wrong["error"]["data"]["reason"] == "invalid_arguments"
    assert stack.seen.calls == ["late_tool"]


async def test_unknown_tools_off_for_an_upstream_forwards_the_call() -> None:
    async with proxy_stack(upstream_keys=", data_plane: {unknown_tools: 'off'}") as stack:
        answer = await raw_call(stack.url, "drop_database", {})
    assert "error" in answer or answer["result"]["isError"] is True
    assert stack.seen.calls == ["drop_database"]


# -- content scanning ---------------------------------------------------------------------------

SCAN_REDACT = """
data_plane:
  scan:
    - name: secrets-and-cards
      detect: [aws_access_key, card_number]
      scope: [results]
      action: redact
"""


async def test_a_result_with_a_test_aws_key_and_card_is_redacted_for_the_agent_and_flagged_in_the_audit() -> (
    None
):
    async with proxy_stack(SCAN_REDACT) as stack, Client(stack.url) as client:
        result = await client.call_tool("fetch_record", {"record_id": "r1"})
    text = str(result.content[0].text)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
    assert text == "record r1: aws key [REDACTED:aws_access_key], card [REDACTED:card_number], ok"
    (record,) = tool_records(stack, "fetch_record")
    findings = record["metadata"]["data_plane"]["findings"]
    assert {(f["kind"], f["action"]) for f in findings} == {
        ("aws_access_key", "redact"),
        ("card_number", "redact"),
    }
    assert "$.result.content[0].text" in {f["path"] for f in findings}
    assert stack.app.gateway.dataplane is not None
    counted = stack.app.gateway.dataplane.stats.findings
    assert counted[("secrets-and-cards", "aws_access_key", "redact")] >= 1
    # The same findings on /metrics (docs/observability.md).
    scraped = {
        (sample.labels["rule"], sample.labels["kind"], sample.labels["action"]): sample.value
        for family in text_string_to_metric_families(stack.app.metrics.exposition().decode())
        if family.name == "helio_data_plane_findings"
        for sample in family.samples
    }
    assert (
        scraped[("secrets-and-cards", "aws_access_key", "redact")]
        == counted[("secrets-and-cards", "aws_access_key", "redact")]
    )
    assert scraped[("secrets-and-cards", "card_number", "redact")] >= 1
    stored = json.dumps(record["upstream_response"])
    assert TEST_AWS_KEY not in stored
    assert "4111" not in stored


async def test_a_block_rule_withholds_the_result() -> None:
    rules = SCAN_REDACT.replace("action: redact", "action: block")
    async with proxy_stack(rules) as stack:
        answer = await raw_call(stack.url, "fetch_record", {"record_id": "r1"})
    error = answer["error"]
    assert error["data"]["reason"] == "sensitive_content"
    assert {f["kind"] for f in error["data"]["findings"]} == {"aws_access_key", "card_number"}
    assert TEST_AWS_KEY not in json.dumps(answer)
    (record,) = tool_records(stack, "fetch_record")
    assert record["block_reason"] == "sensitive_content"
    assert record["success"] is False


async def test_an_argument_scan_blocks_a_secret_before_it_reaches_the_upstream() -> None:
    rules = """
data_plane:
  scan:
    - {name: no-keys-out, detect: [aws_access_key], scope: [arguments], action: block}
"""
    async with proxy_stack(rules) as stack:
        answer = await raw_call(stack.url, "fetch_record", {"record_id": TEST_AWS_KEY})
    assert answer["error"]["data"]["reason"] == "sensitive_content"
    assert answer["error"]["data"]["findings"] == [
        {"rule": "no-keys-out", "kind": "aws_access_key", "path": "$.arguments.record_id"}
    ]
    assert stack.seen.calls == []


async def test_findings_in_the_arguments_and_in_the_result_are_both_recorded() -> None:
    # The argument scan only flags (the call goes ahead), the result scan redacts: the record
    # keeps every finding, each with its scope, not just the answer's.
    rules = """
data_plane:
  scan:
    - {name: keys-in, detect: [aws_access_key], scope: [arguments], action: flag}
    - {name: cards-out, detect: [card_number], scope: [results], action: redact}
"""
    async with proxy_stack(rules) as stack:
        answer = await raw_call(stack.url, "fetch_record", {"record_id": TEST_AWS_KEY})
    assert "4111" not in json.dumps(answer)
    assert stack.seen.calls == ["fetch_record"]
    (record,) = tool_records(stack, "fetch_record")
    findings = record["metadata"]["data_plane"]["findings"]
    assert {(f["rule"], f["kind"], f["scope"], f["action"]) for f in findings} == {
        ("keys-in", "aws_access_key", "arguments", "flag"),
        ("cards-out", "card_number", "results", "redact"),
    }
    paths = {f["path"] for f in findings}
    assert {"$.arguments.record_id", "$.result.content[0].text"} <= paths
    assert record["block_reason"] is None
    counted = stack.app.gateway.dataplane.stats.findings if stack.app.gateway.dataplane else None
    assert counted is not None
    assert counted[("keys-in", "aws_access_key", "flag")] == 1
    assert counted[("cards-out", "card_number", "redact")] == len(findings) - 1


# -- per policy rule ----------------------------------------------------------------------------

LENIENT_PAYMENTS = """
data_plane:
  input_schema: enforce
  tools: [{tools: ['create_*'], input_schema: enforce}]
policies:
  rules:
    - name: lenient-payments
      match: {tool: create_payment}
      action: allow
      data_plane: {input_schema: warn}
"""


async def test_a_rule_in_warn_mode_forwards_its_wrong_typed_call_while_another_tool_is_blocked() -> None:
    async with proxy_stack(LENIENT_PAYMENTS) as stack:
        lenient = await raw_call(stack.url, "create_payment", {"amount": "5000", "currency": "GBP"})
        strict = await raw_call(stack.url, "fetch_record", {"record_id": 5})
        calls = list(stack.seen.calls)
    # The rule's warn wins over the tool glob's and the global enforce.
    assert lenient["result"]["isError"] is False
    assert strict["error"]["data"]["reason"] == "invalid_arguments"
    assert strict["error"]["data"]["errors"][0]["path"] == "$.record_id"
    assert calls == ["create_payment"]
    (passed,) = tool_records(stack, "create_payment")
    assert passed["block_reason"] is None
    assert passed["policy_decision"] == "allow"
    facts = passed["metadata"]["data_plane"]
    assert facts["rule"] == "lenient-payments"
    assert facts["input_schema"]["mode"] == "warn"
    assert facts["input_schema"]["errors"][0]["path"] == "$.amount"
    (blocked,) = tool_records(stack, "fetch_record")
    assert blocked["block_reason"] == "invalid_arguments"
    assert "rule" not in blocked["metadata"]["data_plane"]


async def test_a_rule_can_turn_output_schema_off_for_its_calls() -> None:
    rules = """
policies:
  rules:
    - {name: loose-stats, match: {tool: stats}, action: allow, data_plane: {output_schema: 'off'}}
"""
    async with proxy_stack(rules, prepare=_stricter_output_schema) as stack:
        answer = await raw_call(stack.url, "stats", {})
    assert answer["result"]["structuredContent"] == {"count": 42}
    (record,) = tool_records(stack, "stats")
    assert record["block_reason"] is None


RULE_SCANS = """
policies:
  rules:
    - name: internal-records
      match: {tool: fetch_record, input: {$.record_id: {eq: internal}}}
      action: allow
      data_plane:
        scan: [{name: keys-flagged, detect: [aws_access_key], scope: [results], action: flag}]
    - name: customer-records
      match: {tool: fetch_record}
      action: allow
      data_plane:
        scan: [{name: keys-blocked, detect: [aws_access_key, card_number], scope: [results], action: block}]
"""


async def test_a_rule_level_block_scan_withholds_the_result_of_the_calls_it_matches() -> None:
    async with proxy_stack(RULE_SCANS) as stack:
        blocked = await raw_call(stack.url, "fetch_record", {"record_id": "c-1"})
        flagged = await raw_call(stack.url, "fetch_record", {"record_id": "internal"})
        other = await raw_call(stack.url, "create_payment", {"amount": 1, "currency": "GBP"})
    error = blocked["error"]
    assert error["data"]["reason"] == "sensitive_content"
    assert {(f["rule"], f["kind"]) for f in error["data"]["findings"]} == {
        ("keys-blocked", "aws_access_key"),
        ("keys-blocked", "card_number"),
    }
    assert TEST_AWS_KEY not in json.dumps(blocked)
    # The first matching rule decides: the internal record is only flagged.
    assert TEST_AWS_KEY in flagged["result"]["content"][0]["text"]
    assert other["result"]["isError"] is False
    first, second = tool_records(stack, "fetch_record")
    assert first["block_reason"] == "sensitive_content"
    assert first["metadata"]["data_plane"]["rule"] == "customer-records"
    assert second["block_reason"] is None
    assert second["metadata"]["data_plane"]["rule"] == "internal-records"
    assert {(f["rule"], f["kind"], f["action"]) for f in second["metadata"]["data_plane"]["findings"]} == {
        ("keys-flagged", "aws_access_key", "flag")
    }
    (payment,) = tool_records(stack, "create_payment")
    assert "data_plane" not in payment["metadata"]


async def test_a_rule_level_argument_scan_blocks_before_the_upstream() -> None:
    rules = """
policies:
  rules:
    - name: no-keys-in-lookups
      match: {tool: fetch_record}
      action: allow
      data_plane: {scan: [{name: keys-in, detect: [aws_access_key], scope: [arguments], action: block}]}
"""
    async with proxy_stack(rules) as stack:
        answer = await raw_call(stack.url, "fetch_record", {"record_id": TEST_AWS_KEY})
        calls = list(stack.seen.calls)
    assert answer["error"]["data"]["reason"] == "sensitive_content"
    assert answer["error"]["data"]["findings"] == [
        {"rule": "keys-in", "kind": "aws_access_key", "path": "$.arguments.record_id"}
    ]
    assert calls == []


# -- credentials --------------------------------------------------------------------------------


async def test_the_upstream_gets_the_token_from_the_environment_while_the_agent_sends_none() -> None:
    token = "upstream-token-0123456789"
    async with proxy_stack(
        upstream_keys=", credentials: {type: bearer, from_env: UPSTREAM_TOKEN, name: ci-bot}",
        environ={"UPSTREAM_TOKEN": token},
        accept=lambda value: value == f"Bearer {token}",
    ) as stack:
        async with Client(stack.url) as client:
            result = await client.call_tool("create_payment", {"amount": 1, "currency": "GBP"})
    assert result.is_error is False
    assert stack.seen.calls == ["create_payment"]
    assert set(stack.seen.authorizations) == {f"Bearer {token}"}
    (record,) = tool_records(stack, "create_payment")
    assert record["metadata"]["data_plane"]["credential"] == "ci-bot"
    assert token not in json.dumps(record)


async def test_a_legacy_sse_upstream_gets_the_credential_on_its_stream_and_its_posts() -> None:
    key = "sse-key-0123456789"
    async with (
        proxy_stack(
            upstream_keys=", credentials: {type: header, header: X-Api-Key, from_env: SSE_KEY}",
            environ={"SSE_KEY": key},
            legacy_sse=True,
        ) as stack,
        Client(stack.url) as client,
    ):
        result = await client.call_tool("create_payment", {"amount": 1, "currency": "GBP"})
    assert result.is_error is False
    assert stack.seen.calls == ["create_payment"]
    assert stack.seen.api_keys
    assert set(stack.seen.api_keys) == {key}  # the GET stream and every POST


async def test_the_agents_authorization_never_reaches_the_upstream_by_default() -> None:
    async with proxy_stack() as stack:
        answer = await raw_call(
            stack.url,
            "create_payment",
            {"amount": 1, "currency": "GBP"},
            headers={"authorization": "Bearer agent"},
        )
    assert answer["result"]["isError"] is False
    assert stack.seen.calls == ["create_payment"]
    assert "Bearer agent" not in stack.seen.authorizations


async def test_forward_authorization_opts_in_to_relaying_the_agents_header() -> None:
    async with proxy_stack(upstream_keys=", forward_authorization: true") as stack:
        await raw_call(
            stack.url,
            "create_payment",
            {"amount": 1, "currency": "GBP"},
            headers={"authorization": "Bearer agent"},
        )
    assert "Bearer agent" in stack.seen.authorizations


@dataclass
class AuthServer:
    issued: list[str] = field(default_factory=list[str])
    forms: list[dict[str, str]] = field(default_factory=list[dict[str, str]])

    def app(self) -> Starlette:
        async def token(request: Request) -> JSONResponse:
            form = {k: str(v) for k, v in (await request.form()).items()}
            self.forms.append(form)
            if form.get("client_secret") != "s3cret":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            value = f"at-{len(self.issued) + 1}"
            self.issued.append(value)
            # 30 s lifetime under the default 60 s refresh margin: every use refreshes it.
            return JSONResponse({"access_token": value, "token_type": "Bearer", "expires_in": 30})

        return Starlette(routes=[Route("/token", token, methods=["POST"])])


async def test_client_credentials_tokens_are_obtained_and_refreshed_from_a_loopback_authorization_server() -> (
    None
):
    auth = AuthServer()
    async with serve_asgi(auth.app()) as auth_base:
        keys = (
            ", credentials: {type: oauth2_client_credentials, token_url: '" + auth_base + "/token', "
            "client_id: helio, client_secret_env: OAUTH_SECRET, scope: 'tools:call'}"
        )
        async with proxy_stack(
            upstream_keys=keys,
            environ={"OAUTH_SECRET": "s3cret"},
            accept=lambda value: bool(auth.issued) and value == f"Bearer {auth.issued[-1]}",
        ) as stack:
            first = await raw_call(stack.url, "create_payment", {"amount": 1, "currency": "GBP"})
            second = await raw_call(stack.url, "create_payment", {"amount": 2, "currency": "GBP"})
    assert first["result"]["isError"] is False
    assert second["result"]["isError"] is False
    assert len(auth.issued) >= 2
    assert auth.forms[0]["grant_type"] == "client_credentials"
    assert auth.forms[0]["scope"] == "tools:call"
    used = {value for value in stack.seen.authorizations if value}
    assert {"Bearer at-1", "Bearer at-2"} <= used


async def test_a_stdio_upstream_gets_its_credential_as_an_environment_variable() -> None:
    argv = [sys.executable, str(EVERYTHING_SERVER), "--transport", "stdio"]
    extra_upstream = "  credentials: {type: env, env_var: FILES_TOKEN, from_env: PROXY_FILES_TOKEN}\n"
    config = stdio_proxy_config(argv).replace(
        "  request_timeout: 5s\n", "  request_timeout: 5s\n" + extra_upstream, 1
    )
    async with (
        run_proxy(config, environ={"PROXY_FILES_TOKEN": "stdio-secret"}) as app,
        Client(app.mcp_url) as client,
    ):
        seen = (
            await client.call_tool("whoami", {"names": ["FILES_TOKEN", "PROXY_FILES_TOKEN"]})
        ).structured_content
    assert seen is not None
    assert seen["FILES_TOKEN"] == "stdio-secret"
    assert seen["PROXY_FILES_TOKEN"] is None  # the proxy's own variable is not inherited
