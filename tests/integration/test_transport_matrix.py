"""Every agent-side transport x every upstream transport: the same session, through the proxy.

For each pair, the official ``mcp`` client runs :func:`~tests.peers.script.run_script` against
the everything server twice, directly (over the server's own transport) and through the proxy
(over the agent-side transport), and the two transcripts must be equal: tool results, progress,
log messages, the elicitation and sampling round trips, ``isError``, resources and prompts.

Agent side: streamable HTTP (answers are JSON or SSE, as the upstream gives them; both forms are
asserted where they occur), legacy HTTP+SSE, and stdio (``helio wrap``: the stdio command it starts, or
the upstream its config names). Upstream: streamable HTTP, legacy HTTP+SSE and stdio. A streamable HTTP server that answers only JSON (``json_response``) is not a column: it
has no back-channel for elicitation or sampling even when called directly; JSON relaying is
covered in ``test_streamable_http_relay``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from examples.everything.server import build_server
from helio_proxy.app import HelioApp
from tests.harness import EVERYTHING_SERVER, proxy_config, run_proxy, serve_asgi, stdio_proxy_config
from tests.peers.script import run_script, script_client

STDIO_ARGV = [sys.executable, str(EVERYTHING_SERVER), "--transport", "stdio"]
UPSTREAMS = ("streamable-http", "sse", "stdio")


@dataclass
class Upstream:
    """An everything server: how to reach it directly, and the proxy config that points at it."""

    direct: Any
    config: str


@asynccontextmanager
async def upstream_of(kind: str) -> AsyncIterator[Upstream]:
    if kind == "stdio":
        yield Upstream(
            StdioServerParameters(command=STDIO_ARGV[0], args=STDIO_ARGV[1:]), stdio_proxy_config(STDIO_ARGV)
        )
        return
    server = build_server()
    app = server.sse_app() if kind == "sse" else server.streamable_http_app()
    async with serve_asgi(app) as base:
        if kind == "sse":
            config = proxy_config(f"{base}/sse").replace(
                "  request_timeout: 5s\n", "  request_timeout: 5s\n  transport: sse\n"
            )
            yield Upstream(sse_client(f"{base}/sse"), config)
        else:
            yield Upstream(f"{base}/mcp", proxy_config(f"{base}/mcp"))


async def through_proxy(downstream: str, app: HelioApp) -> tuple[dict[str, Any], set[str]]:
    """The transcript through the proxy, and the answer content types the agent received."""
    if downstream == "legacy-sse":
        return await run_script(script_client(sse_client(app.sse_url))), {"text/event-stream"}
    seen: set[str] = set()

    async def note(response: httpx2.Response) -> None:
        if response.request.method == "POST" and response.status_code == 200:
            seen.add(response.headers.get("content-type", "").split(";")[0])

    async with httpx2.AsyncClient(timeout=20, event_hooks={"response": [note]}) as http:
        transcript = await run_script(script_client(streamable_http_client(app.mcp_url, http_client=http)))
    return transcript, seen


PAIRS = [
    (downstream, upstream)
    for downstream in ("streamable-http", "legacy-sse", "stdio-wrap")
    for upstream in UPSTREAMS
]
"""Every pair: ``helio wrap -- COMMAND`` governs the stdio command it starts; ``helio wrap -c FILE``
(no command) governs the upstream the file names, over HTTP or legacy SSE."""


@pytest.mark.parametrize(("downstream", "upstream"), PAIRS)
async def test_a_session_through_the_proxy_matches_the_direct_one(
    downstream: str, upstream: str, tmp_path: Path
) -> None:
    async with upstream_of(upstream) as server:
        direct = await run_script(script_client(server.direct))
        if downstream == "stdio-wrap":
            if upstream == "stdio":
                argv = ["wrap", "--", *STDIO_ARGV]
            else:
                config = tmp_path / "helio.yaml"
                config.write_text(server.config, encoding="utf-8")
                argv = ["wrap", "-c", str(config)]
            wrapped = StdioServerParameters(command=sys.executable, args=["-m", "helio_proxy", *argv])
            proxied, content_types = await run_script(script_client(wrapped)), {"text/event-stream"}
        else:
            async with run_proxy(server.config) as app:
                proxied, content_types = await through_proxy(downstream, app)
    assert proxied == direct
    assert [step[0] for step in proxied["progress"]] == [1, 2, 3]
    assert [log["data"] for log in proxied["logs"]] == ["log 1", "log 2", "log 3"]
    assert proxied["elicitations"][0]["message"] == "Who are you?"
    assert proxied["samplings"][0]["messages"][0]["content"]["text"] == "write a haiku"
    assert proxied["fail"]["isError"] is True
    # A streamed answer (progress before the response) is SSE on every pair; a message-based
    # upstream's plain answers (the response alone) are JSON.
    assert "text/event-stream" in content_types
    if downstream == "streamable-http" and upstream != "streamable-http":
        assert "application/json" in content_types
