"""Shared test harness: real servers on real loopback sockets inside the test's event loop.

Upstreams are built with the official ``mcp`` SDK; the proxy is the real :class:`HelioApp`.
Every wait is bounded; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from helio_proxy.app import HelioApp
from helio_proxy.audit.query import AuditFilter, fetch
from helio_proxy.config import LoadedConfig, load_config_text
from helio_proxy.server import Listener, bind
from helio_proxy.store import create_store

STARTUP_TIMEOUT = 10.0

EVERYTHING_SERVER = Path(__file__).parents[1] / "examples" / "everything" / "server.py"
"""The test peer with every relayed feature (``--transport stdio|streamable-http|sse``)."""


@asynccontextmanager
async def serve_asgi(app: Any, *, lifespan: str = "on") -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1:<free port>; yields the base URL."""
    sock = bind("127.0.0.1", 0, "test")
    listener = Listener(app, sock, "test")
    listener.server.config.lifespan = lifespan
    task = asyncio.create_task(listener.serve())
    async with asyncio.timeout(STARTUP_TIMEOUT):
        while not listener.server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{listener.port}"
    finally:
        listener.stop()
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await task


def build_test_upstream() -> Any:
    """The demo tools plus test-only ones (a failing tool)."""
    from helio_proxy.demo.server import build_server

    server = build_server()

    @server.tool()
    def always_fails(reason: str = "boom") -> str:
        """Raises, so the result carries isError: true."""
        raise RuntimeError(reason)

    return server


@asynccontextmanager
async def mcp_upstream(*, json_response: bool = False, stateless: bool = False) -> AsyncIterator[str]:
    """A real MCP server (official SDK) over streamable HTTP; yields its /mcp URL."""
    server = build_test_upstream()
    app = server.streamable_http_app(json_response=json_response, stateless_http=stateless)
    async with serve_asgi(app) as base:
        yield f"{base}/mcp"


def proxy_config(
    upstream_url: str, extra: str = "", *, audit_path: str | None = None, audit_extra: str = ""
) -> str:
    """A minimal config for the harness; the audit database goes to a fresh temp dir.

    ``extra`` is appended as top-level YAML; ``audit_extra`` lines (indented two spaces) go under ``audit:``.
    """
    audit = audit_path or str(Path(tempfile.mkdtemp(prefix="helio-test-")) / "audit.db")
    return (
        "version: '1'\n"
        f"upstream:\n  url: '{upstream_url}'\n  request_timeout: 5s\n"
        "listen:\n  port: 0\n"
        "dashboard:\n  enabled: false\n"
        f"audit:\n  path: '{audit}'\n{audit_extra}" + extra
    )


def stdio_proxy_config(
    argv: list[str], extra: str = "", *, name: str = "everything", audit_path: str | None = None
) -> str:
    """Like :func:`proxy_config`, for a stdio upstream (``stdio://NAME``) spawning ``argv``."""
    base = proxy_config("http://unused.invalid/mcp", extra, audit_path=audit_path)
    upstream = (
        f"upstream:\n  url: 'stdio://{name}'\n  transport: stdio\n"
        f"  command: {json.dumps(argv[0])}\n  args: {json.dumps(argv[1:])}\n  request_timeout: 5s\n"
    )
    return base.replace("upstream:\n  url: 'http://unused.invalid/mcp'\n  request_timeout: 5s\n", upstream)


@asynccontextmanager
async def run_proxy(
    config: str | LoadedConfig, *, environ: MutableMapping[str, str] | None = None
) -> AsyncIterator[HelioApp]:
    """The real proxy on a free port; ``app.mcp_url`` is where to point a client.

    ``config``: config text (``${VAR}`` taken from the test process's environment), or a config
    already loaded. ``environ`` is where the sideband token is read from and a generated one
    written to, and what a stdio upstream inherits from (default: a fresh dict, so a generated
    ``HELIO_SDK_TOKEN`` never leaks into the test process's environment; read it as
    ``app.sdk_token.value``).
    """
    loaded = config if isinstance(config, LoadedConfig) else load_config_text(config, path="test.yaml")
    app = HelioApp(loaded, out=io.StringIO(), environ={} if environ is None else environ)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def audit_records(db: Path | str, **where: Any) -> list[dict[str, Any]]:
    """The audit records in the SQLite store at ``db``, oldest first; ``where`` holds
    :class:`~helio_proxy.audit.query.AuditFilter` fields (``tool=``, ``record_kind=``...)."""
    store = create_store(f"sqlite:///{db}")
    store.open_sync()
    try:
        return store.read_sync(lambda c: fetch(c, AuditFilter(**where), order="oldest"))
    finally:
        store.close_sync()


PROXY_SECRETS = {
    "SLACK_SIGNING_SECRET": "slack-signing-secret-value",
    "SLACK_BOT_TOKEN": "xoxb-slack-bot-token-value",
    "HELIO_WEBHOOK_SECRET": "webhook-secret-value",
    "DASHBOARD_SECRET": "dashboard-secret-value-0123456789abcdef",
}
"""Environment values a config names as ``${VAR}`` (see :data:`PROXY_SECRETS_CONFIG`)."""

PROXY_SECRETS_CONFIG = """
approval:
  channels:
    - {type: webhook, name: hooks, url: 'http://127.0.0.1:9/hook', secret: '${HELIO_WEBHOOK_SECRET}'}
    - type: slack
      name: ops
      bot_token: '${SLACK_BOT_TOKEN}'
      signing_secret: '${SLACK_SIGNING_SECRET}'
      channel: C0OPS
      api_base: 'http://127.0.0.1:9/api'
"""
"""Approval channels whose secrets come from :data:`PROXY_SECRETS` (nothing is routed to them)."""

CHILD_ENV_PROBE = [
    *PROXY_SECRETS,
    "HELIO_SDK_TOKEN",
    "HELIO_ANYTHING",
    "COPY_OF_SIGNING_SECRET",
    "CLIENT_MARKER",
    "GIVEN_BY_CONFIG",
    "PATH",
]
"""The variables a stdio child is asked about (the everything server's ``whoami`` tool)."""


def with_dashboard_secret(config_text: str) -> str:
    """The harness config with the dashboard on a free port, its secret taken from ``${DASHBOARD_SECRET}``."""
    return config_text.replace(
        "dashboard:\n  enabled: false\n", "dashboard:\n  port: 0\n  api_secret: '${DASHBOARD_SECRET}'\n"
    )


def probe_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a proxy is started with in the child-environment tests: the proxy's
    secrets, ``HELIO_*`` variables, a copy of one secret under another name, and a variable of
    the client's own (``CLIENT_MARKER``) that the config never names."""
    import os

    return {
        **os.environ,
        **PROXY_SECRETS,
        "HELIO_SDK_TOKEN": "sdk-token-value",
        "HELIO_ANYTHING": "helio-anything-value",
        "COPY_OF_SIGNING_SECRET": PROXY_SECRETS["SLACK_SIGNING_SECRET"],
        "CLIENT_MARKER": "client-marker-value",
        **(extra or {}),
    }
