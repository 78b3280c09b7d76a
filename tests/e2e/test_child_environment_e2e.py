"""What a stdio upstream started by a real ``helio start`` process can see of its environment."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from mcp import Client

from tests.e2e.conftest import free_port, helio, running, wait_for_port
from tests.harness import (
    CHILD_ENV_PROBE,
    EVERYTHING_SERVER,
    PROXY_SECRETS_CONFIG,
    probe_environment,
)

pytestmark = pytest.mark.e2e


async def test_helio_start_gives_a_stdio_child_no_secret_of_the_proxys_and_no_unnamed_variable(
    tmp_path: Path,
) -> None:
    """Issue 22 point 1: the child could read the Slack signing secret and approve its own calls."""
    port, sdk_port = free_port(), free_port()
    argv = [sys.executable, str(EVERYTHING_SERVER), "--transport", "stdio"]
    config = tmp_path / "helio.yaml"
    config.write_text(
        "version: '1'\n"
        "upstream:\n  url: 'stdio://everything'\n  transport: stdio\n"
        f"  command: {json.dumps(argv[0])}\n  args: {json.dumps(argv[1:])}\n"
        "  env: {GIVEN_BY_CONFIG: given-value}\n"
        f"listen:\n  port: {port}\n"
        f"audit:\n  path: '{tmp_path / 'audit.db'}'\n"
        "dashboard:\n  port: 0\n  api_secret: '${DASHBOARD_SECRET}'\n"
        f"sdk:\n  enabled: true\n  port: {sdk_port}\n" + PROXY_SECRETS_CONFIG
    )
    environ = probe_environment()
    del environ["HELIO_SDK_TOKEN"]  # the proxy generates one and puts it in its own environment
    with running(helio("start", "-c", str(config)), env=environ) as process:
        wait_for_port(port, process)
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
            seen = (await client.call_tool("whoami", {"names": CHILD_ENV_PROBE})).structured_content
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert "Shutting down" in output
    assert seen is not None
    assert {name: seen[name] for name in CHILD_ENV_PROBE if seen[name] is not None} == {
        "GIVEN_BY_CONFIG": "given-value",
        "PATH": os.environ["PATH"],
    }
