"""Both MCP protocol eras through the real proxy: header/body agreement (-32020, audited), pins
(refusal of the other era, the stamped version header) and the primer's era detection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from helio_proxy.audit.query import AuditFilter, fetch
from helio_proxy.dataplane.tools import RecordingLister
from helio_proxy.gateway.priming import UpstreamToolLister
from helio_proxy.jsonrpc import HEADER_MISMATCH, INVALID_REQUEST, POLICY_BLOCKED
from helio_proxy.store import create_store
from tests.harness import build_test_upstream, proxy_config, run_proxy, serve_asgi

ACCEPT_BOTH = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
}
DENY_DELETES = "policies:\n  default: allow\n  rules:\n    - name: no-deletes\n      match: {tool: 'delete_*'}\n      action: deny\n"


def _upstream_lister(proxy: Any) -> object:
    """The primer's tools/list source under the data plane's recording wrapper."""
    source = proxy.primer.source
    return source.source if isinstance(source, RecordingLister) else source


class Recording:
    """ASGI wrapper around the upstream app that keeps every request's method, headers and body."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, dict[str, str], Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages: list[Any] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in messages)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.seen.append((scope["method"], headers, json.loads(body) if body else None))
        pending = iter(messages)

        async def replay() -> Any:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)

    def methods(self) -> list[str]:
        return [body["method"] for _, _, body in self.seen if isinstance(body, dict) and "method" in body]


@asynccontextmanager
async def recorded_upstream(*, stateless: bool = False) -> AsyncIterator[tuple[str, Recording]]:
    recording = Recording(build_test_upstream().streamable_http_app(stateless_http=stateless))
    async with serve_asgi(recording) as base:
        yield f"{base}/mcp", recording


def _config(upstream_url: str, *, pin: str = "auto", extra: str = "", audit_path: str | None = None) -> str:
    text = proxy_config(upstream_url, extra, audit_path=audit_path)
    return text.replace("  request_timeout: 5s\n", f"  request_timeout: 5s\n  protocol_version: '{pin}'\n")


def _records(db: Path) -> list[dict[str, Any]]:
    store = create_store(f"sqlite:///{db}")
    store.open_sync()
    try:
        return store.read_sync(lambda c: fetch(c, AuditFilter(), order="oldest"))
    finally:
        store.close_sync()


def _mcp_error(error: BaseException) -> MCPError:
    """The MCPError inside the task-group exception the client's context manager raises."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, MCPError), error
    return error


def _modern_call(name: str, request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"user_id": "u1"}, "_meta": ENVELOPE},
    }


MODERN_HEADERS = {**ACCEPT_BOTH, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call"}


async def test_a_tool_call_whose_mcp_name_header_disagrees_is_refused_with_32020_and_audited(
    tmp_path: Path,
) -> None:
    """Spec 2026-07-28, Server Validation: headers that disagree with the body get 400 / HeaderMismatch."""
    db = tmp_path / "audit.db"
    async with (
        recorded_upstream() as (upstream_url, recording),
        run_proxy(_config(upstream_url, extra=DENY_DELETES, audit_path=str(db))) as proxy,
        httpx.AsyncClient(timeout=10) as http,
    ):
        # The header names an allowed tool; the body calls a denied one.
        smuggled = await http.post(
            proxy.mcp_url,
            json=_modern_call("delete_user"),
            headers={**MODERN_HEADERS, "mcp-name": "get_weather", "x-helio-session-id": "s-9"},
        )
        wrong_method = await http.post(
            proxy.mcp_url,
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": ENVELOPE}},
            headers={**MODERN_HEADERS, "mcp-method": "tools/call"},
        )
        agreeing = await http.post(
            proxy.mcp_url,
            json=_modern_call("delete_user", 3),
            headers={**MODERN_HEADERS, "mcp-name": "delete_user"},
        )
    assert smuggled.status_code == 400
    error = smuggled.json()["error"]
    assert error["code"] == HEADER_MISMATCH
    assert "Mcp-Name" in error["message"]
    assert error["data"] == {"reason": "header_mismatch", "header": "Mcp-Name"}
    assert smuggled.json()["id"] == 1
    assert wrong_method.status_code == 400
    assert wrong_method.json()["error"]["data"]["header"] == "Mcp-Method"
    # Agreeing headers: governed from the body as usual (denied by policy, HTTP 200 / -32001).
    assert agreeing.status_code == 200
    assert agreeing.json()["error"]["code"] == POLICY_BLOCKED
    assert "tools/call" not in recording.methods()  # nothing reached the upstream's tools
    rows = [(r["tool_name"], r["policy_decision"], r["block_reason"]) for r in _records(db)]
    assert rows == [
        ("delete_user", "rejected", "header_mismatch"),
        ("<nameless>", "rejected", "header_mismatch"),
        ("delete_user", "deny", "policy_denied"),
    ]
    first = _records(db)[0]
    assert first["metadata"]["header"] == "Mcp-Name"
    assert first["metadata"]["method"] == "tools/call"
    assert first["session_id"] == "s-9"
    assert first["upstream_latency_ms"] is None


async def test_the_official_client_in_auto_mode_speaks_2026_07_28_through_the_proxy() -> None:
    async with (
        recorded_upstream() as (upstream_url, recording),
        run_proxy(_config(upstream_url, extra=DENY_DELETES)) as proxy,
    ):
        async with Client(proxy.mcp_url, mode="auto") as client:
            assert client.protocol_version == "2026-07-28"
            weather = await client.call_tool("get_weather", {"city": "Oslo"})
            with pytest.raises(MCPError) as denied:
                await client.call_tool("delete_user", {"user_id": "u1"})
        lister = _upstream_lister(proxy)
        assert isinstance(lister, UpstreamToolLister)
        assert lister.era == "modern"  # the primer probed server/discover and stayed stateless
    assert weather.content[0].model_dump()["text"] == "Oslo: 18°C, light rain"
    assert denied.value.error.code == POLICY_BLOCKED
    assert "initialize" not in recording.methods()
    calls = [
        h for _, h, body in recording.seen if isinstance(body, dict) and body.get("method") == "tools/call"
    ]
    assert calls[0]["mcp-name"] == "get_weather"
    assert "mcp-session-id" not in calls[0]


async def test_a_legacy_pin_sends_a_dual_era_client_back_to_initialize() -> None:
    async with (
        recorded_upstream() as (upstream_url, recording),
        run_proxy(_config(upstream_url, pin="2025-06-18")) as proxy,
    ):
        async with Client(proxy.mcp_url, mode="auto") as client:
            version = client.protocol_version
            weather = await client.call_tool("get_weather", {"city": "Oslo"})
        async with httpx.AsyncClient(timeout=10) as http:
            refused = await http.post(
                proxy.mcp_url,
                json=_modern_call("get_weather"),
                headers={**MODERN_HEADERS, "mcp-name": "get_weather"},
            )
        lister = _upstream_lister(proxy)
        assert isinstance(lister, UpstreamToolLister)
        assert lister.probes == 0  # a pin is not probed
    assert version in {"2025-06-18", "2025-11-25"}  # negotiated in the legacy handshake
    assert weather.is_error is False
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == INVALID_REQUEST
    assert refused.json()["error"]["data"]["supported"] == ["2025-06-18"]
    assert "server/discover" not in recording.methods()
    # nothing modern reached the pinned upstream: no envelope in any body
    assert not any(
        "io.modelcontextprotocol/protocolVersion" in json.dumps(body) for _, _, body in recording.seen
    )


async def test_a_legacy_pin_stamps_the_version_header_on_requests_that_omit_it() -> None:
    async with (
        recorded_upstream(stateless=True) as (upstream_url, recording),
        run_proxy(_config(upstream_url, pin="2025-06-18")) as proxy,
        httpx.AsyncClient(timeout=10) as http,
    ):
        bare = {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": "get_weather", "arguments": {"city": "Oslo"}},
        }
        answer = await http.post(proxy.mcp_url, json=bare, headers=ACCEPT_BOTH)
        claimed = await http.post(
            proxy.mcp_url,
            json={**bare, "id": 6},
            headers={**ACCEPT_BOTH, "mcp-protocol-version": "2025-11-25"},
        )
    assert answer.status_code == 200
    assert claimed.status_code == 200
    calls = [
        h for _, h, body in recording.seen if isinstance(body, dict) and body.get("method") == "tools/call"
    ]
    assert [h["mcp-protocol-version"] for h in calls] == ["2025-06-18", "2025-11-25"]


async def test_a_modern_pin_refuses_initialize_with_the_version_it_speaks() -> None:
    async with (
        recorded_upstream() as (upstream_url, recording),
        run_proxy(_config(upstream_url, pin="2026-07-28")) as proxy,
    ):
        with pytest.raises(BaseExceptionGroup) as failed:
            async with Client(proxy.mcp_url, mode="legacy"):
                pass
        refused = _mcp_error(failed.value)
        async with Client(proxy.mcp_url, mode="auto") as client:
            listed = await client.list_tools()
        lister = _upstream_lister(proxy)
        assert isinstance(lister, UpstreamToolLister)
        assert lister.era == "modern"
        assert lister.probes == 0
    assert refused.error.code == INVALID_REQUEST
    assert "2026-07-28" in refused.error.message
    assert "get_weather" in {t.name for t in listed.tools}
    assert "initialize" not in recording.methods()
