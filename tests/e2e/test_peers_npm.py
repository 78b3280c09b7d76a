"""The TypeScript reference peers through a real ``helio start``: the MCP Inspector's CLI
(``@modelcontextprotocol/inspector-cli``) against ``@modelcontextprotocol/server-everything`` in
streamable HTTP mode gets the same answers through the proxy as directly."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.peers.launch import free_port, helio_start, serving, write_proxy_config
from tests.peers.tooling import PeerInstallError, ensure_npm_peers, node_bin_dir, node_env, npm_package_dir

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """server-everything (streamable HTTP) and a proxy in front of it: both URLs."""
    try:
        ensure_npm_peers()
    except PeerInstallError as exc:
        pytest.fail(str(exc))
    work = tmp_path_factory.mktemp("everything")
    upstream_port, proxy_port = free_port(), free_port()
    server = npm_package_dir("@modelcontextprotocol/server-everything") / "dist" / "index.js"
    node = str(node_bin_dir() / "node")
    env = {**node_env(), "PORT": str(upstream_port)}
    with serving([node, str(server), "streamableHttp"], upstream_port, work / "everything.log", env=env):
        direct = f"http://127.0.0.1:{upstream_port}/mcp"
        config = write_proxy_config(work / "helio.yaml", upstream_url=direct, port=proxy_port)
        with serving(helio_start(config), proxy_port, work / "proxy.log"):
            yield {"direct": direct, "proxy": f"http://127.0.0.1:{proxy_port}/mcp"}


def _inspect(url: str, *args: str) -> Any:
    """One inspector CLI call; its JSON output."""
    cli = npm_package_dir("@modelcontextprotocol/inspector-cli") / "build"
    # The CLI reads its own package.json relative to the working directory, so it runs from build/.
    done = subprocess.run(
        [str(node_bin_dir() / "node"), str(cli / "index.js"), url, "--transport", "http", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cli,
        env=node_env(),
    )
    assert done.returncode == 0, f"inspector CLI failed on {url} {args}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


CALLS = [
    ("--method", "tools/list"),
    ("--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=héllo through helio"),
    ("--method", "tools/call", "--tool-name", "get-sum", "--tool-arg", "a=2", "b=40"),
    ("--method", "tools/call", "--tool-name", "get-structured-content", "--tool-arg", "location=New York"),
    ("--method", "resources/list"),
    ("--method", "prompts/list"),
]


@pytest.mark.parametrize("call", CALLS, ids=[" ".join(c[1:4:2]) for c in CALLS])
def test_the_inspector_cli_gets_the_same_answers_through_the_proxy(
    everything: dict[str, str], call: tuple[str, ...]
) -> None:
    # Two independent node processes: run side by side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        direct, proxied = pool.map(
            lambda url: _inspect(url, *call), [everything["direct"], everything["proxy"]]
        )
    if call[1] == "tools/call":
        # The one thing the proxy adds to a forwarded call's result: its call id (docs/evidence.md).
        assert set(proxied.pop("_meta")) == {"io.gethelio/call-id"}
    assert proxied == direct
    if call[1] == "tools/list":
        assert {"echo", "get-sum"} <= {tool["name"] for tool in proxied["tools"]}
    if "get-sum" in call:
        assert "42" in proxied["content"][0]["text"]
    if "echo" in call:
        assert proxied["content"][0]["text"] == "Echo: héllo through helio"
