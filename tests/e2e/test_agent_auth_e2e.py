"""Agent authentication through a real ``helio start`` on a real port: no token or a wrong one → 401
with the metadata pointer; a static token and a JWT of a loopback test issuer → served, with
``agent_id`` in the audit record; ``helio start`` on a non-loopback address without ``listen.auth``
refuses to start."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.harness import EVERYTHING_SERVER, audit_records
from tests.issuer import ISSUER, TestIssuer
from tests.peers.launch import free_port, helio_start, serving, write_proxy_config

pytestmark = pytest.mark.e2e

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
ACCEPT = {"accept": "application/json, text/event-stream"}


async def _echo(url: str, token: str) -> str:
    async with (
        httpx2.AsyncClient(timeout=20, headers={"authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        result = await client.call_tool("echo", {"text": "hi"})
        assert result.is_error is False
        return str(result.content[0].text)  # type: ignore[union-attr]


async def test_helio_start_authenticates_agents(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    token_hash = "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    issuer = TestIssuer()
    upstream_port, proxy_port = free_port(), free_port()
    upstream = [
        sys.executable,
        str(EVERYTHING_SERVER),
        "--transport",
        "streamable-http",
        "--port",
        str(upstream_port),
    ]
    async with issuer.serve() as jwks_url:
        auth = (
            "  auth:\n"
            f"    tokens: [{{agent_id: ci-bot, token_hash: '{token_hash}'}}]\n"
            f"    jwt: [{{issuer: '{ISSUER}', jwks_url: '{jwks_url}'}}]\n"
        )
        config = write_proxy_config(
            tmp_path / "helio.yaml", upstream_url=f"http://127.0.0.1:{upstream_port}/mcp", port=proxy_port
        )
        config.write_text(
            config.read_text().replace(f"  port: {proxy_port}\n", f"  port: {proxy_port}\n{auth}")
        )
        url = f"http://127.0.0.1:{proxy_port}/mcp"
        with (
            serving(upstream, upstream_port, tmp_path / "upstream.log"),
            serving(helio_start(config), proxy_port, tmp_path / "proxy.log"),
        ):
            async with httpx.AsyncClient(timeout=10) as http:
                refused = await http.post(url, json=INIT, headers=ACCEPT)
                assert refused.status_code == 401
                pointer = f'resource_metadata="http://127.0.0.1:{proxy_port}/.well-known/oauth-protected-resource/mcp"'
                assert pointer in refused.headers["www-authenticate"]
                wrong = await http.post(url, json=INIT, headers={**ACCEPT, "authorization": "Bearer wrong"})
                assert wrong.status_code == 401
                assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
                expired = issuer.token(url, exp=1_000_000_000)
                late = await http.post(
                    url, json=INIT, headers={**ACCEPT, "authorization": f"Bearer {expired}"}
                )
                assert late.status_code == 401
            assert await _echo(url, token) == "hi"
            assert await _echo(url, issuer.token(url, sub="jwt-agent")) == "hi"
    records = audit_records(tmp_path / "helio-audit.db", record_kind="tool_call")
    assert [(r["agent_id"], r["tool_name"], r["policy_decision"]) for r in records] == [
        ("ci-bot", "echo", "allow"),
        ("jwt-agent", "echo", "allow"),
    ]


def test_helio_start_refuses_a_non_loopback_bind_without_auth(tmp_path: Path) -> None:
    config = write_proxy_config(
        tmp_path / "helio.yaml", upstream_url="http://127.0.0.1:9/mcp", port=free_port()
    )
    config.write_text(config.read_text().replace("listen:\n", "listen:\n  host: 0.0.0.0\n"))
    done = subprocess.run(helio_start(config), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "agents are not authenticated" in done.stderr + done.stdout
    assert "listen.allow_unauthenticated: true" in done.stderr + done.stdout
