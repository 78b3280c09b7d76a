"""Several upstreams (``upstreams:``): each mounted at ``/mcp/<name>`` and ``/sse/<name>`` with its
own gateway and baselines, sharing one policy, one audit trail and one evidence store."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from mcp import Client
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

from helio_proxy.app import HelioApp
from helio_proxy.audit.query import AuditFilter, fetch
from helio_proxy.config import parse_config_text
from helio_proxy.store import create_store
from tests.harness import mcp_upstream, run_proxy

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _config(a_url: str, b_url: str, db: Path) -> str:
    return f"""
version: '1'
upstreams:
  - {{name: a, url: '{a_url}', request_timeout: 5s}}
  - {{name: b, url: '{b_url}', request_timeout: 5s}}
listen: {{port: 0}}
dashboard: {{enabled: false}}
audit: {{path: '{db}'}}
policies:
  rules:
    - name: no-weather-on-b
      match: {{upstreams: [b], tool: get_weather}}
      action: deny
"""


@asynccontextmanager
async def _two_upstreams(db: Path) -> AsyncIterator[HelioApp]:
    async with (
        mcp_upstream(stateless=True, json_response=True) as a_url,
        mcp_upstream(stateless=True, json_response=True) as b_url,
        run_proxy(_config(a_url, b_url, db)) as app,
    ):
        yield app


async def _call(http: httpx.AsyncClient, url: str, request_id: int) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "get_weather", "arguments": {"city": "Oslo"}},
    }
    response = await http.post(url, json=body, headers={**HEADERS, "x-helio-session-id": "run-1"})
    assert response.status_code == 200
    return response.json()


def _records(db: Path) -> list[dict[str, Any]]:
    store = create_store(f"sqlite:///{db}")
    store.open_sync()
    try:
        return store.read_sync(lambda c: fetch(c, AuditFilter(), order="oldest"))
    finally:
        store.close_sync()


async def test_a_rule_matching_one_upstream_blocks_only_there_and_records_name_the_upstream(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    async with _two_upstreams(db) as app, httpx.AsyncClient(timeout=10) as http:
        on_a = await _call(http, f"{app.base_url}/mcp/a", 1)
        on_b = await _call(http, f"{app.base_url}/mcp/b", 2)
    assert on_a["result"]["content"][0]["text"] == "Oslo: 18°C, light rain"
    assert on_b["error"]["code"] == -32001
    assert on_b["error"]["data"]["reason"] == "policy_denied"
    assert on_b["error"]["data"]["rule"] == "no-weather-on-b"
    records = [r for r in _records(db) if r["record_kind"] == "tool_call"]
    assert [(r["metadata"]["upstream"], r["policy_decision"]) for r in records] == [
        ("a", "allow"),
        ("b", "deny"),
    ]


async def test_legacy_sse_mount_of_an_upstream_is_governed_like_its_mcp_mount(tmp_path: Path) -> None:
    async with _two_upstreams(tmp_path / "audit.db") as app:
        async with Client(sse_client(f"{app.base_url}/sse/a"), mode="legacy") as client:
            allowed = await client.call_tool("get_weather", {"city": "Oslo"})
        async with Client(sse_client(f"{app.base_url}/sse/b"), mode="legacy") as client:
            try:
                await client.call_tool("get_weather", {"city": "Oslo"})
            except MCPError as exc:
                blocked = exc.error
            else:
                raise AssertionError("get_weather on b was not blocked")
    assert allowed.is_error is False
    assert blocked.code == -32001
    assert isinstance(blocked.data, dict)
    assert blocked.data["reason"] == "policy_denied"


async def test_bare_paths_answer_404_naming_the_mounts(tmp_path: Path) -> None:
    async with _two_upstreams(tmp_path / "audit.db") as app, httpx.AsyncClient(timeout=10) as http:
        bare = await http.post(f"{app.base_url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        bare_sse = await http.get(f"{app.base_url}/sse")
        unknown = await http.post(f"{app.base_url}/mcp/c", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert bare.status_code == bare_sse.status_code == unknown.status_code == 404
    assert bare.json()["error"]["code"] == -32600
    assert "/mcp/a, /mcp/b" in bare.json()["error"]["message"]
    assert "/sse/a, /sse/b" in bare_sse.json()["error"]["message"]
    assert "/mcp/a, /mcp/b" in unknown.json()["error"]["message"]


def test_the_multiple_upstreams_example_in_the_docs_loads() -> None:
    text = (Path(__file__).parents[2] / "docs" / "transports.md").read_text()
    section = text[text.index("## Multiple upstreams") :]
    example = section[section.index("```yaml\n") + 8 : section.index("```\n", section.index("```yaml"))]
    # The example takes its dashboard secret from the environment, as a real config should.
    config = parse_config_text(example, source="docs/transports.md", env={"HELIO_API_SECRET": "s" * 64})
    assert [u.name for u in config.upstream_list] == ["files", "legacy", "local"]
    assert [u.transport for u in config.upstream_list] == ["streamable-http", "sse", "stdio"]


async def test_startup_lists_every_mount_and_each_upstream_keeps_its_own_baselines(tmp_path: Path) -> None:
    async with _two_upstreams(tmp_path / "audit.db") as app:
        output = app.out.getvalue() if isinstance(app.out, io.StringIO) else ""
        base = app.base_url
        assert [m.name for m in app.mounts] == ["a", "b"]
        assert app.mount("a").baseline_store is not app.mount("b").baseline_store
        assert app.mount("a").baselines.primed
        assert app.mount("b").baselines.primed
    for name in ("a", "b"):
        assert f"MCP endpoint ({name}): {base}/mcp/{name}" in output
        assert f"Legacy SSE endpoint ({name}): {base}/sse/{name}" in output
        assert (
            f"Annotation cache primed ({name}): 9 tool definitions baselined" in output
        )  # demo tools + always_fails
    assert "Upstream (a): http://127.0.0.1:" in output
