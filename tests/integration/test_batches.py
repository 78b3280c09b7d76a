"""JSON-RPC batches on POST /mcp: allowed for 2025-03-26 clients, refused from 2025-06-18 on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.harness import mcp_upstream, proxy_config, run_proxy, serve_asgi
from tests.integration.approval_support import records

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
POLICY = """
policies:
  rules:
    - name: no-deletes
      match: {tool: 'delete_*'}
      action: deny
"""


def _call(request_id: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


async def test_a_batch_is_answered_in_order_with_every_tool_call_governed_and_audited(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        _call(2, "get_weather", {"city": "Leeds"}),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        _call(3, "delete_user", {"user_id": "u-1"}),
        {"jsonrpc": "2.0", "id": 4, "method": ""},
    ]
    async with (
        mcp_upstream(stateless=True, json_response=True) as upstream,
        run_proxy(proxy_config(upstream, POLICY, audit_path=str(db))) as app,
        httpx.AsyncClient(timeout=30) as http,
    ):
        answered = await http.post(app.mcp_url, json=batch, headers=HEADERS)
    assert answered.status_code == 200
    assert answered.headers["content-type"].startswith("application/json")
    listed, weather, denied, invalid = answered.json()
    assert listed["id"] == 1
    assert "get_weather" in [tool["name"] for tool in listed["result"]["tools"]]
    assert weather["id"] == 2
    assert weather["result"]["content"][0]["text"] == "Leeds: 18°C, light rain"
    assert denied["id"] == 3
    assert denied["error"]["code"] == -32001
    assert denied["error"]["data"]["reason"] == "policy_denied"
    assert invalid == {
        "jsonrpc": "2.0",
        "id": 4,
        "error": {"code": -32600, "message": '"method" must be a non-empty string'},
    }
    decisions = {r["tool_name"]: r["policy_decision"] for r in records(db)}
    assert decisions == {"get_weather": "allow", "delete_user": "deny"}


async def test_batches_are_refused_from_protocol_2025_06_18_and_malformed_batches_are_400() -> None:
    async with (
        mcp_upstream(stateless=True, json_response=True) as upstream,
        run_proxy(proxy_config(upstream)) as app,
        httpx.AsyncClient(timeout=30) as http,
    ):
        modern = await http.post(
            app.mcp_url,
            json=[_call(1, "get_weather", {"city": "Leeds"})],
            headers={**HEADERS, "mcp-protocol-version": "2025-06-18"},
        )
        empty = await http.post(app.mcp_url, json=[], headers=HEADERS)
        too_many = await http.post(
            app.mcp_url, json=[{"jsonrpc": "2.0", "method": "ping"}] * 101, headers=HEADERS
        )
        only_notifications = await http.post(
            app.mcp_url,
            json=[{"jsonrpc": "2.0", "method": "notifications/initialized"}],
            headers={**HEADERS, "mcp-protocol-version": "2025-03-26"},
        )
    assert modern.status_code == 400
    assert modern.json()["error"]["code"] == -32600
    assert "2025-06-18" in modern.json()["error"]["message"]
    assert empty.status_code == 400
    assert empty.json()["error"]["message"] == "an empty batch is not a JSON-RPC request"
    assert too_many.status_code == 400
    assert "at most 100" in too_many.json()["error"]["message"]
    assert only_notifications.status_code == 202
    assert only_notifications.content == b""


def _deep_401_upstream() -> Any:
    """An upstream that answers every POST with 401 and a JSON body nested 100,000 deep (past the
    standard decoder's recursion limit): 401 is relayed with its body, unparsed."""
    deep = b"[" * 100_000 + b"]" * 100_000

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": deep})

    return app


async def test_a_batch_element_whose_upstream_answer_nests_too_deep_gets_an_error_not_a_500() -> None:
    call = _call(1, "get_weather", {"city": "Leeds"})
    async with (
        serve_asgi(_deep_401_upstream()) as upstream,
        run_proxy(proxy_config(f"{upstream}/mcp")) as app,
        httpx.AsyncClient(timeout=30) as http,
    ):
        answered = await http.post(
            app.mcp_url, json=[call, {"jsonrpc": "2.0", "id": 2, "method": "ping"}], headers=HEADERS
        )
    assert answered.status_code == 200
    first, second = answered.json()
    for element, request_id in ((first, 1), (second, 2)):
        assert element["id"] == request_id
        assert element["error"] == {
            "code": -32603,
            "message": "the upstream gave no answer to this request",
        }
