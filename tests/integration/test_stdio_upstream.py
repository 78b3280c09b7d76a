"""A stdio upstream behind the proxy: the official client sees the same session as direct.

The upstream is the everything server (``tests/peers``) spawned by the proxy, one child per
client session; the client is the official ``mcp`` SDK over streamable HTTP (and raw httpx where
the wire shape matters).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any, cast

import httpx
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from helio_proxy.config import load_config_text
from helio_proxy.transports.upstream.channel import RestartPolicy
from helio_proxy.transports.upstream.stdio import StdioUpstream
from tests.harness import (
    CHILD_ENV_PROBE,
    EVERYTHING_SERVER,
    PROXY_SECRETS_CONFIG,
    probe_environment,
    run_proxy,
    stdio_proxy_config,
    with_dashboard_secret,
)
from tests.peers.script import run_script, script_client

ARGV = [sys.executable, str(EVERYTHING_SERVER), "--transport", "stdio"]
JSON_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
DENY_FAIL = """
policies:
  default: allow
  rules:
    - name: no-failing
      match: {tool: fail}
      action: deny
"""


def _direct() -> StdioServerParameters:
    return StdioServerParameters(command=ARGV[0], args=ARGV[1:])


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


async def _open_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    answer = await http.post(url, json=INIT, headers=JSON_HEADERS)
    assert answer.status_code == 200
    headers = {**JSON_HEADERS, "mcp-session-id": answer.headers["mcp-session-id"]}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await http.post(url, json=initialized, headers=headers)).status_code == 202
    return headers


def _call(request_id: int, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments or {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def _payload(response: httpx.Response) -> dict[str, Any]:
    if response.headers["content-type"].startswith("text/event-stream"):
        return _events(response.text)[-1]
    return response.json()


async def test_official_client_through_the_proxy_to_a_stdio_server_matches_direct() -> None:
    direct = await run_script(script_client(_direct()))
    async with run_proxy(stdio_proxy_config(ARGV)) as app:
        # The primer lists the tools over its own stdio session (at boot, unless the child was
        # slower to start than the boot wait; then once more here).
        async with asyncio.timeout(20):
            primed = app.baselines.primed or await app.primer.prime_once() == 6
        assert primed
        proxied = await run_script(script_client(app.mcp_url))
    assert proxied == direct
    assert [step[0] for step in proxied["progress"]] == [1, 2, 3]
    assert [log["data"] for log in proxied["logs"]] == ["log 1", "log 2", "log 3"]
    assert proxied["elicitations"][0]["message"] == "Who are you?"
    assert proxied["samplings"][0]["messages"][0]["content"]["text"] == "write a haiku"
    assert proxied["sample"]["structuredContent"]["result"].startswith("model said: a haiku")
    assert proxied["fail"]["isError"] is True


async def test_answers_are_json_when_the_response_comes_alone_and_sse_when_notifications_precede_it() -> None:
    async with run_proxy(stdio_proxy_config(ARGV)) as app, httpx.AsyncClient(timeout=10) as http:
        headers = await _open_session(http, app.mcp_url)
        echo = await http.post(app.mcp_url, json=_call(1, "echo", {"text": "hi"}), headers=headers)
        assert echo.headers["content-type"] == "application/json"
        assert echo.json()["result"]["structuredContent"] == {"result": "hi"}
        call = _call(2, "progress_and_log", {"steps": 2})
        call["params"]["_meta"] = {"progressToken": "p"}
        streamed = await http.post(app.mcp_url, json=call, headers=headers)
        assert streamed.headers["content-type"].startswith("text/event-stream")
        kinds = [event.get("method") or event["id"] for event in _events(streamed.text)]
        assert kinds == ["notifications/progress", "notifications/message"] * 2 + [2]
        call["id"] = 3
        json_only = {**headers, "accept": "application/json"}
        collapsed = await http.post(app.mcp_url, json=call, headers=json_only)
        assert collapsed.headers["content-type"] == "application/json"
        assert collapsed.json()["result"]["structuredContent"] == {"result": "done after 2 steps"}


async def test_two_clients_get_their_own_child_and_sessions_are_not_shared() -> None:
    async with run_proxy(stdio_proxy_config(ARGV)) as app:
        async with Client(app.mcp_url, mode="legacy") as first, Client(app.mcp_url, mode="legacy") as second:
            pids = [
                (await client.call_tool("whoami", {})).structured_content["pid"]  # type: ignore[index]
                for client in (first, second)
            ]
        assert pids[0] != pids[1]
        async with httpx.AsyncClient(timeout=10) as http:
            unknown = await http.post(
                app.mcp_url,
                json=_call(1, "echo", {"text": "x"}),
                headers={**JSON_HEADERS, "mcp-session-id": "nope"},
            )
            assert unknown.status_code == 404
            missing = await http.post(app.mcp_url, json=_call(1, "echo", {"text": "x"}), headers=JSON_HEADERS)
            assert missing.status_code == 400


async def test_a_killed_child_fails_the_call_in_flight_with_upstream_exited_and_the_next_call_works() -> None:
    async with run_proxy(stdio_proxy_config(ARGV)) as app, httpx.AsyncClient(timeout=10) as http:
        upstream = cast(StdioUpstream, app.upstream)
        upstream.policy = RestartPolicy(base_delay=0.05)
        headers = await _open_session(http, app.mcp_url)
        before = _payload(await http.post(app.mcp_url, json=_call(1, "whoami"), headers=headers))
        pid = int(before["result"]["structuredContent"]["pid"])
        async with http.stream(
            "POST", app.mcp_url, json=_call(2, "elicit", {"question": "?"}), headers=headers
        ) as answer:
            lines = answer.aiter_lines()
            async for line in lines:
                if line.startswith("data:"):
                    assert json.loads(line[5:])["method"] == "elicitation/create"
                    break
            os.kill(pid, signal.SIGKILL)  # the child waits for the elicitation answer: it dies mid-request
            rest = [json.loads(line[5:]) async for line in lines if line.startswith("data:")]
        error = rest[-1]["error"]
        assert rest[-1]["id"] == 2
        assert error["code"] == -32603
        assert error["data"]["failure_class"] == "upstream_exited"
        assert error["data"]["failure_reason"] == "exited"
        async with asyncio.timeout(10):
            after = _payload(await http.post(app.mcp_url, json=_call(3, "whoami"), headers=headers))
        assert int(after["result"]["structuredContent"]["pid"]) != pid
        assert upstream.sessions[headers["mcp-session-id"]].channel.restarts == 1  # type: ignore[union-attr]


async def test_under_start_a_stdio_child_gets_the_default_set_and_upstream_env_and_no_secret_of_the_proxys() -> (
    None
):
    """Issue 22 point 1: the child could read the Slack signing secret and approve its own calls."""
    environ = probe_environment()
    text = with_dashboard_secret(stdio_proxy_config(ARGV, PROXY_SECRETS_CONFIG)).replace(
        "  request_timeout: 5s\n", "  request_timeout: 5s\n  env: {GIVEN_BY_CONFIG: given-value}\n", 1
    )
    loaded = load_config_text(text, path="test.yaml", env=environ)
    async with run_proxy(loaded, environ=environ) as app, Client(app.mcp_url, mode="legacy") as client:
        seen = (await client.call_tool("whoami", {"names": CHILD_ENV_PROBE})).structured_content
    assert seen is not None
    assert {name: seen[name] for name in CHILD_ENV_PROBE if seen[name] is not None} == {
        "GIVEN_BY_CONFIG": "given-value",
        "PATH": os.environ["PATH"],
    }


async def test_a_deny_rule_blocks_a_stdio_tool_with_the_usual_feedback() -> None:
    async with run_proxy(stdio_proxy_config(ARGV, DENY_FAIL)) as app, httpx.AsyncClient(timeout=10) as http:
        headers = await _open_session(http, app.mcp_url)
        blocked = _payload(await http.post(app.mcp_url, json=_call(1, "fail"), headers=headers))
    assert blocked["error"]["code"] == -32001
    assert blocked["error"]["data"]["reason"] == "policy_denied"
    assert blocked["error"]["data"]["rule"] == "no-failing"


async def test_a_command_that_cannot_start_fails_initialize_with_spawn_failed() -> None:
    argv = ["/nonexistent/helio-test-server"]
    async with run_proxy(stdio_proxy_config(argv)) as app, httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(app.mcp_url, json=INIT, headers=JSON_HEADERS)
    error = answer.json()["error"]
    assert error["code"] == -32603
    assert error["data"]["failure_reason"] == "spawn_failed"
