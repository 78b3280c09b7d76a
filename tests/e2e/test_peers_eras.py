"""Both protocol eras through a real ``helio start`` with independent peers: the official Python SDK
2.x ``Client`` (auto mode: 2026-07-28 when the upstream offers it) and the 1.x ``ClientSession``
(initialize era, run from its own virtual environment), each against a 1.x ``FastMCP`` upstream and
a 2.x ``MCPServer`` upstream. Every combination lists, calls, and gets ``-32001`` for a denied call."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from helio_proxy.jsonrpc import POLICY_BLOCKED
from tests.peers.launch import free_port, helio_start, serving, write_proxy_config
from tests.peers.tooling import ROOT, PeerInstallError, ensure_mcp1

pytestmark = pytest.mark.e2e

DENY_DELETES = (
    "policies:\n  default: allow\n  rules:\n    - name: no-deletes\n"
    "      match: {tool: 'delete_*'}\n      action: deny\n"
)


@pytest.fixture(scope="module")
def mcp1_python() -> Path:
    try:
        return ensure_mcp1()
    except PeerInstallError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def endpoints(
    mcp1_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, dict[str, str]]]:
    """For each upstream SDK: its direct URL and the URL of a proxy in front of it."""
    work = tmp_path_factory.mktemp("eras")
    upstreams = {
        "mcp1": [str(mcp1_python), str(ROOT / "tests/peers/mcp1_server.py"), "--port"],
        "mcp2": [sys.executable, "-m", "helio_proxy.demo.server", "--stateful", "--port"],
    }
    found: dict[str, dict[str, str]] = {}
    with ExitStack() as stack:
        for sdk, command in upstreams.items():
            upstream_port, proxy_port = free_port(), free_port()
            stack.enter_context(
                serving([*command, str(upstream_port)], upstream_port, work / f"{sdk}-upstream.log")
            )
            direct = f"http://127.0.0.1:{upstream_port}/mcp"
            config = write_proxy_config(
                work / f"{sdk}.yaml", upstream_url=direct, port=proxy_port, extra=DENY_DELETES
            )
            stack.enter_context(serving(helio_start(config), proxy_port, work / f"{sdk}-proxy.log"))
            found[sdk] = {"direct": direct, "proxy": f"http://127.0.0.1:{proxy_port}/mcp"}
        yield found


async def _mcp2_session(url: str) -> dict[str, Any]:
    async with Client(url, mode="auto") as client:
        tools = await client.list_tools()
        weather = await client.call_tool("get_weather", {"city": "Oslo"})
        try:
            await client.call_tool("delete_user", {"user_id": "u1"})
            denied: dict[str, Any] = {"code": None}
        except MCPError as exc:
            denied = {"code": exc.error.code, "data": exc.error.data}
        version = client.protocol_version
    return {
        "protocol_version": version,
        "tools": sorted(t.name for t in tools.tools),
        "weather": [
            block.model_dump(mode="json", exclude={"meta", "annotations"}) for block in weather.content
        ],
        "weather_is_error": weather.is_error,
        "denied": denied,
    }


def _mcp1_session(python: Path, url: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), str(ROOT / "tests/peers/mcp1_client.py"), url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen: dict[str, Any] = json.loads(done.stdout)
    assert seen["sdk"].startswith("1.")
    seen["weather"] = [
        {k: v for k, v in block.items() if k not in ("meta", "annotations")} for block in seen["weather"]
    ]
    return seen


EXPECTED_VERSION = {
    ("mcp2", "mcp2"): "2026-07-28",  # both sides modern: stateless, no handshake
    ("mcp2", "mcp1"): "2025-11-25",  # the 2.x client's server/discover probe fails; it falls back
    ("mcp1", "mcp2"): "2025-11-25",
    ("mcp1", "mcp1"): "2025-11-25",
}


@pytest.mark.parametrize("upstream", ["mcp1", "mcp2"])
@pytest.mark.parametrize("client", ["mcp1", "mcp2"])
async def test_each_sdk_generation_works_through_the_proxy_against_each_upstream_generation(
    client: str, upstream: str, endpoints: dict[str, dict[str, str]], mcp1_python: Path
) -> None:
    urls = endpoints[upstream]
    if client == "mcp2":
        direct, proxied = await _mcp2_session(urls["direct"]), await _mcp2_session(urls["proxy"])
    else:
        direct, proxied = await asyncio.gather(  # two independent client processes, side by side
            asyncio.to_thread(_mcp1_session, mcp1_python, urls["direct"]),
            asyncio.to_thread(_mcp1_session, mcp1_python, urls["proxy"]),
        )
    assert proxied["protocol_version"] == EXPECTED_VERSION[(client, upstream)]
    assert proxied["protocol_version"] == direct["protocol_version"]
    assert {"get_weather", "delete_user"} <= set(proxied["tools"])
    assert proxied["tools"] == direct["tools"]
    assert proxied["weather"] == direct["weather"] == [{"type": "text", "text": "Oslo: 18°C, light rain"}]
    assert proxied["weather_is_error"] is False
    assert direct["denied"] == {"code": None}  # the upstream itself would run it
    assert proxied["denied"]["code"] == POLICY_BLOCKED
    assert proxied["denied"]["data"]["reason"] == "policy_denied"
