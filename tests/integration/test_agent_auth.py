"""Agent authentication on the MCP port (``listen.auth``) against the real app, with the official
``mcp`` client as the agent and a real MCP server upstream that records the headers it gets.

Static tokens and JWTs from a local issuer (keys made by the test, JWKS served on loopback) are
served and named in the audit record; a missing or bad token gets 401 with the RFC 9728 metadata
pointer; one agent cannot use another's session; the upstream never sees the agent's token, even
with ``forward_authorization: true``.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from helio_proxy.app import HelioApp
from helio_proxy.killswitch.model import agent_scope
from tests.harness import audit_records, build_test_upstream, proxy_config, run_proxy, serve_asgi
from tests.integration.test_data_plane import Recording, Seen
from tests.issuer import TestIssuer

ALICE, BOB = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
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


def _hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _auth_config(jwks_url: str) -> str:
    return f"""
  auth:
    tokens:
      - {{agent_id: alice, token_hash: '{_hash(ALICE)}'}}
      - {{agent_id: bob, token_hash: '{_hash(BOB)}'}}
    jwt:
      - issuer: https://issuer.helio.test
        jwks_url: '{jwks_url}'
        algorithms: [RS256, ES256]
        required_scopes: ['mcp:tools']
"""


POLICIES = """
policies:
  default: allow
  rules:
    - name: bob-may-not-ask
      match: {tool: get_weather, agent: 'bo*'}
      action: deny
    - name: one-greeting-per-agent
      match: {tool: search_docs}
      action: rate_limit
      limits: {max_calls: 1, window: 1h, key: agent}
"""


@dataclass
class Stack:
    app: HelioApp
    issuer: TestIssuer
    seen: Seen
    db: Path

    @property
    def url(self) -> str:
        return self.app.mcp_url

    @property
    def base(self) -> str:
        return self.url.removesuffix("/mcp")


@asynccontextmanager
async def auth_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    issuer, seen = TestIssuer(), Seen()
    upstream_app = build_test_upstream().streamable_http_app()
    async with issuer.serve() as jwks_url, serve_asgi(Recording(upstream_app, seen)) as upstream:
        db = tmp_path / "audit.db"
        config = proxy_config(f"{upstream}/mcp", POLICIES, audit_path=str(db))
        config = config.replace("listen:\n  port: 0\n", "listen:\n  port: 0\n" + _auth_config(jwks_url))
        config = config.replace(
            "  request_timeout: 5s\n", "  request_timeout: 5s\n  forward_authorization: true\n"
        )
        async with run_proxy(config) as app:
            yield Stack(app, issuer, seen, db)


@asynccontextmanager
async def agent(url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=20, headers={"authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


def _payload(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a JSON or SSE answer."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [
            line.removeprefix("data:").strip()
            for line in response.text.splitlines()
            if line.startswith("data:")
        ]
        return json.loads(data[-1])
    return response.json()


def _output(app: HelioApp) -> str:
    out = app.out
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def _challenge(response: httpx.Response) -> str:
    return response.headers["www-authenticate"]


async def test_no_token_or_a_wrong_one_gets_401_with_the_metadata_pointer(tmp_path: Path) -> None:
    async with auth_stack(tmp_path) as stack, httpx.AsyncClient(timeout=10) as http:
        primed = len(stack.seen.authorizations)  # the proxy's own tools/list at boot
        metadata_url = f"{stack.base}/.well-known/oauth-protected-resource/mcp"
        missing = await http.post(stack.url, json=INIT, headers=ACCEPT)
        assert missing.status_code == 401
        assert _challenge(missing) == f'Bearer resource_metadata="{metadata_url}"'
        assert missing.json()["error"]["data"] == {"reason": "unauthorized"}
        wrong = await http.post(stack.url, json=INIT, headers={**ACCEPT, "authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert _challenge(wrong).startswith(
            f'Bearer resource_metadata="{metadata_url}", error="invalid_token"'
        )
        legacy = await http.get(f"{stack.base}/sse", headers={"authorization": "Bearer nope"})
        assert legacy.status_code == 401
        assert f'resource_metadata="{stack.base}/.well-known/oauth-protected-resource/sse"' in _challenge(
            legacy
        )
        for method in ("GET", "DELETE"):
            refused = await http.request(method, stack.url, headers={"accept": "text/event-stream"})
            assert refused.status_code == 401
        # RFC 9728: the document the pointer names, and the root one.
        document = (await http.get(metadata_url)).json()
        assert document == {
            "resource": stack.url,
            "authorization_servers": ["https://issuer.helio.test"],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["mcp:tools"],
        }
        root = (await http.get(f"{stack.base}/.well-known/oauth-protected-resource")).json()
        assert root["resource"] == stack.base
        assert (
            await http.get(f"{stack.base}/.well-known/oauth-protected-resource/mcp/nope")
        ).status_code == 404
    # Nothing reached the upstream.
    assert len(stack.seen.authorizations) == primed
    assert "Agents: authenticated (2 static tokens; JWT issuers: https://issuer.helio.test)" in _output(
        stack.app
    )


async def test_a_static_token_is_served_with_its_agent_in_the_audit_and_never_reaches_the_upstream(
    tmp_path: Path,
) -> None:
    async with auth_stack(tmp_path) as stack:
        async with agent(stack.url, ALICE) as alice:
            assert (await alice.call_tool("get_weather", {"city": "Paris"})).is_error is False
            await alice.call_tool("search_docs", {"query": "x"})
            with pytest.raises(MCPError) as limited:  # the `agent` limit key counts per agent
                await alice.call_tool("search_docs", {"query": "y"})
            assert limited.value.data["reason"] == "rate_limited"
        async with agent(stack.url, BOB) as bob:
            with pytest.raises(MCPError) as denied:  # match.agent
                await bob.call_tool("get_weather", {"city": "Paris"})
            assert denied.value.data["reason"] == "policy_denied"
            assert denied.value.data["rule"] == "bob-may-not-ask"
            await bob.call_tool("search_docs", {"query": "z"})  # bob's own greeting bucket
    records = audit_records(stack.db, record_kind="tool_call")
    assert [(r["agent_id"], r["tool_name"], r["policy_decision"]) for r in records] == [
        ("alice", "get_weather", "allow"),
        ("alice", "search_docs", "rate_limit"),
        ("alice", "search_docs", "rate_limit"),
        ("bob", "get_weather", "deny"),
        ("bob", "search_docs", "rate_limit"),
    ]
    assert [r["block_reason"] for r in records][2] == "rate_limited"
    # forward_authorization is on, and still the upstream never saw the token Helio checked.
    assert stack.seen.authorizations
    assert set(stack.seen.authorizations) == {None}


async def test_a_jwt_of_the_local_issuer_is_served_rsa_and_ec(tmp_path: Path) -> None:
    async with auth_stack(tmp_path) as stack:
        for alg, subject in (("RS256", "agent-rsa"), ("ES256", "agent-ec")):
            async with agent(stack.url, stack.issuer.token(stack.url, alg=alg, sub=subject)) as client:
                assert (await client.call_tool("get_weather", {"city": "Paris"})).is_error is False
        fetched = stack.issuer.fetches
    assert fetched == 1  # the JWKS was fetched once and cached
    records = audit_records(stack.db, record_kind="tool_call")
    assert [r["agent_id"] for r in records] == ["agent-rsa", "agent-ec"]
    assert set(stack.seen.authorizations) == {None}


async def test_bad_jwts_are_refused(tmp_path: Path) -> None:
    async with auth_stack(tmp_path) as stack, httpx.AsyncClient(timeout=10) as http:
        primed = len(stack.seen.authorizations)
        issuer, url = stack.issuer, stack.url
        cases: dict[str, tuple[str, str]] = {
            "expired": (issuer.token(url, exp=1_000_000_000, iat=999_999_000), "the token has expired"),
            "wrong audience": (issuer.token("http://other.example/mcp"), "audience"),
            "wrong issuer": (TestIssuer("https://evil.example").token(url), "issuer is not trusted"),
            "alg none": (issuer.unsigned(url), "algorithm 'none'"),
            "HS256 keyed with the public key": (issuer.hs256_with_public_key(url), "algorithm 'HS256'"),
            "unknown kid": (issuer.token(url, kid="rotated-away"), "signing key (kid) is not known"),
            "signed by another key": (TestIssuer().token(url), "not valid"),
            "RS384 not allowed": (issuer.token(url, alg="RS384"), "algorithm 'RS384'"),
        }
        for name, (token, why) in cases.items():
            response = await http.post(url, json=INIT, headers={**ACCEPT, "authorization": f"Bearer {token}"})
            assert response.status_code == 401, name
            assert 'error="invalid_token"' in _challenge(response), name
            assert why in _challenge(response), (name, _challenge(response))
        no_scope = issuer.token(url, scope="other")
        response = await http.post(url, json=INIT, headers={**ACCEPT, "authorization": f"Bearer {no_scope}"})
        assert response.status_code == 403
        assert 'error="insufficient_scope", scope="mcp:tools"' in _challenge(response)
    assert len(stack.seen.authorizations) == primed


async def test_one_agent_cannot_use_another_agents_session(tmp_path: Path) -> None:
    async with auth_stack(tmp_path) as stack, httpx.AsyncClient(timeout=10) as http:
        as_alice = {**ACCEPT, "authorization": f"Bearer {ALICE}"}
        as_bob = {**ACCEPT, "authorization": f"Bearer {BOB}"}
        init = await http.post(stack.url, json=INIT, headers=as_alice)
        session = {"mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        listed = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert (await http.post(stack.url, json=listed, headers={**as_alice, **session})).status_code == 200
        stolen = await http.post(stack.url, json=listed, headers={**as_bob, **session})
        assert stolen.status_code == 403
        assert "belongs to another agent" in stolen.json()["error"]["message"]
        deleted = await http.delete(stack.url, headers={**as_bob, **session})
        assert deleted.status_code == 403
        # A governance session id (x-helio-session-id) is bound to the first agent that calls with it.
        call: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "get_weather", "arguments": {"city": "Paris"}},
        }
        run = {"x-helio-session-id": "run-42"}
        assert "result" in _payload(
            await http.post(stack.url, json=call, headers={**as_alice, **session, **run})
        )
        bob_init = await http.post(stack.url, json=INIT, headers=as_bob)
        bob_session = {"mcp-session-id": bob_init.headers["mcp-session-id"]}
        foreign = await http.post(stack.url, json=call, headers={**as_bob, **bob_session, **run})
        error = _payload(foreign)["error"]
        assert error["code"] == -32001
        assert error["data"]["reason"] == "session_agent_mismatch"
        # Legacy SSE: a POST to alice's stream with bob's token is refused.
        async with http.stream(
            "GET", f"{stack.base}/sse", headers={"authorization": f"Bearer {ALICE}"}
        ) as sse:
            assert sse.status_code == 200
            lines = sse.aiter_lines()
            endpoint = ""
            async for line in lines:
                if line.startswith("data:"):
                    endpoint = line.removeprefix("data:").strip()
                    break
            posted = await http.post(f"{stack.base}{endpoint}", json=INIT, headers=as_bob)
            assert posted.status_code == 404
            accepted = await http.post(f"{stack.base}{endpoint}", json=INIT, headers=as_alice)
            assert accepted.status_code == 202
    records = audit_records(stack.db, record_kind="tool_call")
    assert [(r["agent_id"], r["block_reason"]) for r in records] == [
        ("alice", None),
        ("bob", "session_agent_mismatch"),
    ]


async def test_the_kill_switch_agent_scope_stops_only_that_authenticated_agent(tmp_path: Path) -> None:
    async with auth_stack(tmp_path) as stack:
        switch = stack.app.kill_switch
        assert await switch.switch(
            agent_scope("alice"), engaged=True, actor="oncall", reason="runaway", source="api"
        )
        async with agent(stack.url, ALICE) as alice:
            with pytest.raises(MCPError) as killed:
                await alice.call_tool("search_docs", {"query": "x"})
            assert killed.value.data["reason"] == "kill_switch"
            assert killed.value.data["kill_switch_scope"] == "agent:alice"
        async with agent(stack.url, BOB) as bob:
            assert (await bob.call_tool("search_docs", {"query": "y"})).is_error is False
        await switch.switch(agent_scope("alice"), engaged=False, actor="oncall", reason=None, source="api")
        async with agent(stack.url, ALICE) as alice:
            assert (await alice.call_tool("search_docs", {"query": "z"})).is_error is False
    records = audit_records(stack.db, record_kind="tool_call")
    assert [(r["agent_id"], r["block_reason"]) for r in records] == [
        ("alice", "kill_switch"),
        ("bob", None),
        ("alice", None),
    ]
