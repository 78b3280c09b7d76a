"""``helio wrap``: the proxy as a stdio MCP server in front of a stdio server it spawns.

Driven like a desktop client drives a server: the official ``mcp`` client launches
``helio wrap -- <command>`` and talks to it over stdin/stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters

from helio import HelioContext
from helio_proxy.audit.query import AuditFilter, fetch
from helio_proxy.store import create_store
from tests.harness import (
    CHILD_ENV_PROBE,
    EVERYTHING_SERVER,
    PROXY_SECRETS_CONFIG,
    probe_environment,
    proxy_config,
    run_proxy,
    stdio_proxy_config,
    with_dashboard_secret,
)
from tests.peers.script import run_script, script_client

EVERYTHING = [sys.executable, str(EVERYTHING_SERVER), "--transport", "stdio"]
REFUND_SERVER = Path(__file__).parents[2] / "examples" / "refund" / "server.py"
DENY_FAIL = """
policies:
  default: allow
  rules:
    - name: no-failing
      match: {tool: fail}
      action: deny
      feedback:
        message: 'fail is not allowed here'
        suggestion: 'call echo instead'
"""
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def _wrapped(
    argv: list[str], *, config: Path | None = None, env: dict[str, str] | None = None
) -> StdioServerParameters:
    options = ["-c", str(config)] if config else []
    return StdioServerParameters(
        command=sys.executable, args=["-m", "helio_proxy", "wrap", *options, "--", *argv], env=env
    )


def _direct(argv: list[str]) -> StdioServerParameters:
    return StdioServerParameters(command=argv[0], args=argv[1:])


def _wrap_process(argv: list[str], stdin: bytes, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "helio_proxy", "wrap", "--", *argv],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def _result(result: Any) -> dict[str, Any]:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"meta"})


async def test_wrapped_everything_server_passes_the_script_with_the_direct_transcript() -> None:
    direct = await run_script(script_client(_direct(EVERYTHING)))
    wrapped = await run_script(script_client(_wrapped(EVERYTHING)))
    assert wrapped == direct
    assert [log["data"] for log in wrapped["logs"]] == ["log 1", "log 2", "log 3"]
    assert wrapped["elicit"]["structuredContent"]["result"] == "accepted: Ada (subscribe=True)"
    assert wrapped["fail"]["isError"] is True
    calls = _recorded_calls("helio-audit.db")  # the default config audits to ./helio-audit.db
    assert [tool for tool, _decision, _reason in calls] == [
        "echo",
        "progress_and_log",
        "elicit",
        "sample",
        "fail",
        "no_such_tool",
    ]
    assert {decision for tool, decision, _reason in calls if tool != "no_such_tool"} == {"allow"}
    assert calls[-1] == ("no_such_tool", "deny", "tool_not_found")  # refused by the proxy (data plane)


def _recorded_calls(db: str | Path) -> list[tuple[str, str, str | None]]:
    store = create_store(f"sqlite:///{db}")
    store.open_sync()
    try:
        records = store.read_sync(lambda conn: fetch(conn, AuditFilter(), order="oldest"))
    finally:
        store.close_sync()
    return [(r["tool_name"], r["policy_decision"], r["block_reason"]) for r in records if r["tool_name"]]


async def _blocked(client: Client) -> dict[str, Any]:
    assert (await client.call_tool("echo", {"text": "ok"})).is_error is False
    with pytest.raises(MCPError) as blocked:
        await client.call_tool("fail", {"reason": "x"})
    return {
        "code": blocked.value.code,
        "message": blocked.value.error.message,
        "data": blocked.value.error.data,
    }


async def test_a_deny_rule_blocks_in_wrap_mode_with_the_http_feedback_and_the_audit_records_the_calls(
    tmp_path: Path,
) -> None:
    db = tmp_path / "wrap-audit.db"
    config = tmp_path / "helio.yaml"
    config.write_text(f"version: '1'\ndashboard:\n  enabled: false\naudit:\n  path: '{db}'\n{DENY_FAIL}")
    async with Client(_wrapped(EVERYTHING, config=config), mode="legacy") as client:
        over_stdio = await _blocked(client)
    async with (
        run_proxy(stdio_proxy_config(EVERYTHING, DENY_FAIL)) as app,
        Client(app.mcp_url, mode="legacy") as client,
    ):
        over_http = await _blocked(client)
    assert over_stdio == over_http
    assert over_stdio["code"] == -32001
    assert over_stdio["data"]["reason"] == "policy_denied"
    assert over_stdio["data"]["suggestion"] == "call echo instead"
    assert _recorded_calls(db) == [("echo", "allow", None), ("fail", "deny", "policy_denied")]


async def _tour(params: StdioServerParameters, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with Client(params, mode="legacy") as client:
        tools = await client.list_tools()
        results = [
            _result(await client.call_tool(name, args, progress_callback=on_progress)) for name, args in calls
        ]
        info = client.server_info.model_dump(mode="json") if client.server_info else None
    names = sorted(tool.name for tool in tools.tools)
    return {"server": info, "tools": names, "results": results, "progress": progress}


@pytest.mark.parametrize(
    ("argv", "calls"),
    [
        (
            [sys.executable, "-m", "helio_proxy.demo.server", "--transport", "stdio"],
            [
                ("get_weather", {"city": "Oslo"}),
                ("build_report", {"steps": 2}),
                ("lookup_order", {"order_id": "X"}),
            ],
        ),
        (
            [sys.executable, str(REFUND_SERVER), "--transport", "stdio"],
            [
                ("orders.lookup", {"order_id": "A-1001"}),
                ("customer.verify", {"order_id": "A-1001", "email": "alice@example.com"}),
                ("process_refund", {"order_id": "A-1001", "reason": "broken"}),
            ],
        ),
    ],
    ids=["demo", "refund"],
)
async def test_the_example_servers_run_under_wrap_as_they_do_directly(
    argv: list[str], calls: list[tuple[str, dict[str, Any]]]
) -> None:
    direct = await _tour(_direct(argv), calls)
    wrapped = await _tour(_wrapped(argv), calls)
    assert wrapped == direct
    assert len(wrapped["results"]) == len(calls)


async def test_a_command_that_does_not_exist_exits_3_with_a_clear_message_and_nothing_on_stdout() -> None:
    done = await asyncio.to_thread(_wrap_process, ["/nonexistent/helio-test-server"], b"")
    assert done.returncode == 3
    assert done.stdout == b""
    assert b"cannot start the upstream" in done.stderr
    assert b"/nonexistent/helio-test-server" in done.stderr


async def test_a_child_that_dies_at_once_fails_initialize_with_upstream_exited_and_exits_3() -> None:
    dying = [sys.executable, "-c", "import sys; sys.exit(1)"]
    done = await asyncio.to_thread(_wrap_process, dying, json.dumps(INIT).encode() + b"\n")
    assert done.returncode == 3
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    error = json.loads(lines[0])["error"]
    assert error["code"] == -32603
    assert error["data"]["failure_class"] == "upstream_exited"
    assert b"could not be initialized" in done.stderr


async def test_stdout_carries_only_protocol_lines_and_bad_lines_get_json_rpc_errors() -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "x"}},
    }
    lines = [
        json.dumps(INIT),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        "not json",
        json.dumps({"jsonrpc": "1.0", "id": 9, "method": "ping"}),
        json.dumps(call),
    ]
    done = await asyncio.to_thread(_wrap_process, EVERYTHING, "\n".join(lines).encode() + b"\n")
    assert done.returncode == 0
    out = [json.loads(line) for line in done.stdout.splitlines()]  # every stdout line is JSON
    by_id = {message.get("id"): message for message in out}
    assert by_id[1]["result"]["serverInfo"]["name"] == "everything"
    assert by_id[None]["error"]["code"] == -32700
    assert by_id[9]["error"]["code"] == -32600
    assert by_id[2]["result"]["structuredContent"] == {"result": "x"}
    assert b"serving MCP on stdin/stdout" in done.stderr


async def test_under_wrap_the_child_inherits_the_clients_environment_but_no_secret_of_the_proxys(
    tmp_path: Path,
) -> None:
    """Issue 22 point 1: the child could read the Slack signing secret and approve its own calls."""
    config = tmp_path / "helio.yaml"
    config.write_text(with_dashboard_secret(proxy_config("http://unused.invalid/mcp", PROXY_SECRETS_CONFIG)))
    params = _wrapped(EVERYTHING, config=config, env=probe_environment())
    async with Client(params, mode="legacy") as client:
        seen = (await client.call_tool("whoami", {"names": CHILD_ENV_PROBE})).structured_content
    assert seen is not None
    assert {name: seen[name] for name in CHILD_ENV_PROBE if seen[name] is not None} == {
        "CLIENT_MARKER": "client-marker-value",
        "PATH": os.environ["PATH"],
    }


async def test_over_stdio_a_repeated_key_and_a_tools_call_notification_are_refused_and_recorded_rejected(
    tmp_path: Path,
) -> None:
    """Issue 22 points 8 and 9, on the stdio transport (the HTTP ones: test_ingress_refusals)."""
    db = tmp_path / "audit.db"
    config = tmp_path / "helio.yaml"
    config.write_text(f"version: '1'\ndashboard:\n  enabled: false\naudit:\n  path: '{db}'\n")
    lines = [
        json.dumps(INIT).encode(),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode(),
        b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a","text":"b"}}}',
        json.dumps(
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "n"}}}
        ).encode(),
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "ok"}},
            }
        ).encode(),
    ]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "helio_proxy", "wrap", "-c", str(config), "--", *EVERYTHING],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    by_id = {message.get("id"): message for message in out}
    assert by_id[2]["error"]["code"] == -32600
    assert by_id[2]["error"]["data"]["reason"] == "duplicate_key"
    assert by_id[2]["error"]["data"]["duplicate_key"] == "params.arguments.text"
    assert by_id[None]["error"]["code"] == -32600
    assert by_id[None]["error"]["data"]["reason"] == "notification_tool_call"
    assert by_id[3]["result"]["structuredContent"] == {"result": "ok"}
    assert _recorded_calls(db) == [
        ("echo", "rejected", "duplicate_key"),
        ("echo", "rejected", "notification_tool_call"),
        ("echo", "allow", None),
    ]


async def test_calls_carrying_the_sdk_meta_key_are_filed_under_the_sdk_session_in_wrap_mode(
    tmp_path: Path,
) -> None:
    """Over stdio there are no headers: ``HelioContext.meta`` carries the session in ``params._meta``."""
    db = tmp_path / "wrap-audit.db"
    config = tmp_path / "helio.yaml"
    config.write_text(
        f"version: '1'\ndashboard:\n  enabled: false\naudit:\n  path: '{db}'\n"
        "policies:\n  default: allow\n  rules:\n"
        "    - name: refund-needs-lookup\n      match: {tool: process_refund}\n"
        "      requires: ['orders.lookup']\n"
    )
    ctx = HelioContext("http://127.0.0.1:9", "stdio-run-1", token="")
    server = [sys.executable, str(REFUND_SERVER), "--transport", "stdio"]
    async with Client(_wrapped(server, config=config), mode="legacy") as c:
        await c.call_tool("orders.lookup", {"order_id": "A-1001"}, meta=ctx.meta)
        await c.call_tool("process_refund", {"order_id": "A-1001"}, meta=ctx.meta)
        await c.call_tool("orders.lookup", {"order_id": "A-1002"})
    store = create_store(f"sqlite:///{db}")
    store.open_sync()
    try:
        records = store.read_sync(lambda conn: fetch(conn, AuditFilter(), order="oldest"))
    finally:
        store.close_sync()
    calls = [
        (r["tool_name"], r["policy_decision"], r["session_id"], r["session_source"])
        for r in records
        if r["tool_name"] in ("orders.lookup", "process_refund")
    ]
    assert calls[:2] == [
        ("orders.lookup", "allow", "stdio-run-1", "meta"),
        ("process_refund", "allow", "stdio-run-1", "meta"),
    ]
    assert calls[2][2:] != ("stdio-run-1", "meta")
    assert calls[2][3] == "legacy_header"
