"""Ingress validation on ``/mcp``: each malformed or hostile request gets its HTTP status and
JSON-RPC code, and none of them reaches the upstream."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from helio_proxy.config import parse_config_text
from helio_proxy.gateway import Gateway
from helio_proxy.transports.downstream.streamable_http import McpListenerApp
from helio_proxy.transports.upstream.streamable_http import StreamableHttpUpstream

CONFIG = """
version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
listen:
  allowed_origins: ['https://app.example.com']
  max_body_bytes: 1024
dashboard: {enabled: false}
"""
VALID = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'


@pytest.fixture
async def client() -> Any:
    config = parse_config_text(CONFIG)
    upstream = StreamableHttpUpstream(config.upstream_list[0])
    await upstream.start()
    app = McpListenerApp(Gateway(upstream), config.listen)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as http:
        yield http
    await upstream.close()


def _json_rpc_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["jsonrpc"] == "2.0"
    return body["error"]


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/mcp", content=VALID, headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert _json_rpc_error(response)["code"] == -32600


async def test_content_type_parameters_are_ignored_but_the_essence_must_match(
    client: httpx.AsyncClient,
) -> None:
    ok = await client.post("/mcp", content=VALID, headers={"content-type": "Application/JSON; charset=utf-8"})
    bypass = await client.post("/mcp", content=VALID, headers={"content-type": "application/json-patch+json"})
    assert ok.status_code == 200  # reaches the (unreachable) upstream: -32603 inside HTTP 200
    assert _json_rpc_error(ok)["code"] == -32603
    assert bypass.status_code == 415


async def test_malformed_json_is_400_parse_error_without_id(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/mcp", content=b'{"jsonrpc": "2.0", "id": 1,', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert _json_rpc_error(response)["code"] == -32700
    assert "id" not in response.json()


@pytest.mark.parametrize(
    "body",
    [
        b'{"id":1,"method":"tools/list"}',
        b'{"jsonrpc":"1.0","id":1,"method":"tools/list"}',
        b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}',
        b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}',
        b'{"jsonrpc":"2.0","id":1,"method":""}',
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":3}',
        b'{"jsonrpc":"2.0","id":1}',
        b"[]",
        b'"just a string"',
    ],
    ids=[
        "no-version",
        "wrong-version",
        "bool-id",
        "null-id",
        "empty-method",
        "scalar-params",
        "no-method",
        "empty-batch",
        "scalar",
    ],
)
async def test_invalid_envelope_is_400_invalid_request(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/mcp", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert _json_rpc_error(response)["code"] == -32600


async def test_origin_not_in_allowlist_is_403(client: httpx.AsyncClient) -> None:
    evil = await client.post(
        "/mcp", content=VALID, headers={"content-type": "application/json", "origin": "https://evil.example"}
    )
    null = await client.post(
        "/mcp", content=VALID, headers={"content-type": "application/json", "origin": "null"}
    )
    allowed = await client.post(
        "/mcp",
        content=VALID,
        headers={"content-type": "application/json", "origin": "https://app.example.com"},
    )
    assert evil.status_code == 403
    assert _json_rpc_error(evil)["code"] == -32600
    assert null.status_code == 403
    assert allowed.status_code == 200


async def test_non_loopback_host_header_is_403_dns_rebinding_guard(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/mcp", content=VALID, headers={"content-type": "application/json", "host": "attacker.example:3000"}
    )
    assert response.status_code == 403
    assert _json_rpc_error(response)["code"] == -32600
    loopback = await client.post(
        "/mcp", content=VALID, headers={"content-type": "application/json", "host": "localhost:3000"}
    )
    assert loopback.status_code == 200


async def test_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    big = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":"' + b"x" * 2000 + b'"}}'
    response = await client.post("/mcp", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert _json_rpc_error(response)["code"] == -32600


async def test_chunked_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 200
        yield VALID

    response = await client.post("/mcp", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


async def test_other_methods_and_paths_are_refused(client: httpx.AsyncClient) -> None:
    put = await client.put("/mcp", content=VALID, headers={"content-type": "application/json"})
    elsewhere = await client.post("/other", content=VALID, headers={"content-type": "application/json"})
    assert put.status_code == 405
    assert put.headers["allow"] == "GET, POST, DELETE"
    assert elsewhere.status_code == 404


async def test_healthz_answers_without_an_upstream(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"host": "lb.internal"})
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
