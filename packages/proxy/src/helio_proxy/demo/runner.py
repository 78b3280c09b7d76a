"""``helio demo``: start the demo MCP server in a child process and the proxy in front of it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import socket
import subprocess
import sys
import time
from importlib import resources

from helio_proxy.app import HelioApp, run_app
from helio_proxy.config import LoadedConfig, load_config_text
from helio_proxy.demo.traffic import drive
from helio_proxy.errors import StartupError
from helio_proxy.sideband import TOKEN_ENV_VAR

READY_TIMEOUT_SECONDS = 20.0


def _ensure_free(port: int, option: str) -> None:
    """Fail before starting anything when a port is taken (another server would answer instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise StartupError(
                f"port {port} on 127.0.0.1 is already in use; choose another with {option}"
            ) from None


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartupError(
                f"the demo MCP server exited with code {process.returncode} (is port {port} free?)"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.1)
    raise StartupError(
        f"the demo MCP server did not start listening on port {port} within {READY_TIMEOUT_SECONDS:.0f}s"
    )


def demo_config(
    port: int, upstream_port: int, dashboard_port: int, api_secret: str, sdk_port: int = 3200
) -> LoadedConfig:
    """The packaged demo config with the chosen ports and this run's dashboard secret filled in."""
    source = resources.files("helio_proxy.demo").joinpath("helio.yaml")
    text = source.read_text(encoding="utf-8")
    env = {
        "HELIO_DEMO_PORT": str(port),
        "HELIO_DEMO_UPSTREAM_PORT": str(upstream_port),
        "HELIO_DEMO_DASHBOARD_PORT": str(dashboard_port),
        "HELIO_DEMO_SDK_PORT": str(sdk_port),
        "HELIO_DEMO_API_SECRET": api_secret,
    }
    return dataclasses.replace(load_config_text(text, path=str(source), env=env), warnings=[])


def banner(
    mcp_url: str,
    upstream_port: int,
    dashboard_url: str,
    api_secret: str,
    sideband_url: str,
    sdk_token: str,
    login_token: str,
) -> str:
    blocked_call = '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_user","arguments":{"user_id":"u-1"}}}'
    tool_call = '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"London"}}}'
    return f"""
Console: open {dashboard_url}/?token={login_token}
  (a one-time login link, valid for 2 minutes; afterwards log in with the secret under Approvals)
  Scripted traffic (session helio-demo-traffic) is on its way there: allowed reads, a denied
  delete, a dry-run email, a budget in use, and a payment waiting for your approval.
Demo MCP server: http://127.0.0.1:{upstream_port}/mcp (tools: get_weather, search_docs, lookup_order,
  send_email, delete_user, create_payment, refund_order, build_report)
Point any MCP client at: {mcp_url}
  Claude Desktop / Cursor: {{"mcpServers": {{"helio-demo": {{"url": "{mcp_url}"}}}}}}
Policies: delete_user is blocked (destructive), reads are allowed, send_email is a dry run,
  create_payment waits for an operator's approval, refund_order needs evidence 'order_data'.
Try it:
  curl -s -X POST {mcp_url} -H 'Content-Type: application/json' \\
    -d '{{"jsonrpc":"2.0","id":1,"method":"tools/list"}}'
  curl -s -X POST {mcp_url} -H 'Content-Type: application/json' \\
    -d '{tool_call}'
  curl -s -X POST {mcp_url} -H 'Content-Type: application/json' \\
    -d '{blocked_call}'
Approvals: the dashboard API is on {dashboard_url}/api/ ; this run's secret (a new one each run):
  {api_secret}
  A create_payment call hangs until you decide. In another terminal:
  HELIO_API_SECRET={api_secret} helio approvals list --url {dashboard_url}
  HELIO_API_SECRET={api_secret} helio approvals approve <id> --url {dashboard_url}
  (or: curl -s {dashboard_url}/api/approvals?status=pending -H 'Authorization: Bearer {api_secret}')
SDK agents: the sideband (evidence, context, dependencies) is on {sideband_url}. In the agent's
  terminal, set these three (the Helio SDK reads the first two; examples/demo-agent reads the third):
  export HELIO_SDK_URL={sideband_url}
  export HELIO_SDK_TOKEN={sdk_token}
  export HELIO_MCP_URL={mcp_url}
Audit trail: ./helio-demo-audit.db (SQLite, mode 0600; one record per tools/call)
Press Ctrl+C to stop.
"""


def run_demo(
    *,
    port: int,
    upstream_port: int,
    json_responses: bool,
    dashboard_port: int = 3100,
    sdk_port: int = 3200,
    traffic: bool = True,
) -> None:
    try:
        import mcp  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        raise StartupError("helio demo needs the official MCP SDK: pip install 'helio-proxy[demo]'") from None
    api_secret = secrets.token_urlsafe(24)
    loaded = demo_config(port, upstream_port, dashboard_port, api_secret, sdk_port)
    _ensure_free(port, "--port")
    _ensure_free(upstream_port, "--upstream-port")
    _ensure_free(dashboard_port, "--dashboard-port")
    _ensure_free(sdk_port, "--sdk-port")
    command = [sys.executable, "-m", "helio_proxy.demo.server", "--port", str(upstream_port)]
    if json_responses:
        command.append("--json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIO_")}
    process = subprocess.Popen(command, env=env)
    try:
        _wait_for_port(upstream_port, process)
        # A fresh sideband token each run (printed below), never one left in the shell's environment.
        app = HelioApp(
            loaded,
            environ={k: v for k, v in os.environ.items() if k != TOKEN_ENV_VAR},
            require_console=True,
        )
        original = app._print_startup  # pyright: ignore[reportPrivateUsage]

        background: list[asyncio.Task[None]] = []

        def print_with_banner() -> None:
            original()
            token = app.sdk_token.value if app.sdk_token is not None else ""
            assert app.operator_api is not None
            login = app.operator_api.auth.issue_login_token()
            if traffic:
                background.append(asyncio.create_task(drive(app.mcp_url), name="helio-demo-traffic"))
            app.say(
                banner(
                    app.mcp_url, upstream_port, app.dashboard_url, api_secret, app.sideband_url, token, login
                )
            )

        app._print_startup = print_with_banner  # type: ignore[method-assign]  # pyright: ignore[reportPrivateUsage]
        run_app(app)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
