"""``helio wrap``: the proxy as a stdio MCP server, governing a stdio server it spawns (or the
upstream its config names).

The config is optional. Without one, every call is allowed (``policies.default: allow``) and
audited to ``./helio-audit.db``; the dashboard and the sideband stay off. With ``-c``, the file
is used as it is except that its ``upstream`` (or ``upstreams``) is replaced by the command.
With ``-c`` and no command, the config's own single upstream is governed, whatever its transport
(a remote streamable HTTP or legacy SSE server, for a client that can only launch commands).
A stdio child inherits the environment the client gave the proxy, minus the proxy's secrets
(see :mod:`helio_proxy.transports.upstream.stdio`).

Exit codes: 0 when stdin closes (the audit trail is flushed first); 3 when the command cannot be
started, or keeps dying until the restart policy gives up; a config error exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final

from helio_proxy.app import HelioApp
from helio_proxy.config import LoadedConfig, load_config, load_config_text
from helio_proxy.errors import ConfigError, HelioProxyError, StartupError
from helio_proxy.hardening import forbid_inspection
from helio_proxy.transports.downstream.stdio import StdioServer, open_stdio
from helio_proxy.transports.upstream.channel import MessageUpstream
from helio_proxy.transports.upstream.stdio import StdioUpstream

DEFAULT_WRAP_CONFIG: Final = "version: '1'\npolicies:\n  default: allow\ndashboard:\n  enabled: false\n"
"""What ``helio wrap`` runs with when no ``-c`` is given (audit at its default, ``./helio-audit.db``)."""

NO_CONFIG_PATH: Final = Path("(helio wrap defaults)")

_INTERPRETERS: Final = frozenset(
    {"python", "python3", "node", "deno", "bun", "npx", "bunx", "uv", "uvx", "pipx"}
)


def upstream_name(command: Sequence[str]) -> str:
    """A short name for logs (``stdio://NAME``): the script or package, else the program."""
    program = Path(command[0]).name
    name = program
    if re.sub(r"[\d.]+$", "", program) in _INTERPRETERS:
        rest = [arg for arg in command[1:] if not arg.startswith("-") and arg != "run"]
        if rest:
            name = Path(rest[0]).stem if "/" in rest[0] or rest[0].endswith(".py") else rest[0]
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.")
    return cleaned or "server"


def upstream_section(command: Sequence[str]) -> dict[str, Any]:
    return {
        "url": f"stdio://{upstream_name(command)}",
        "transport": "stdio",
        "command": command[0],
        "args": list(command[1:]),
    }


def wrap_config(command: Sequence[str], config_path: str | None) -> LoadedConfig:
    """The config ``helio wrap`` runs with (``ConfigError`` when the file is invalid or, without a
    command, does not name exactly one upstream)."""
    if not command:
        if config_path is None:
            raise ConfigError("give the server's command after '--', or -c FILE whose upstream to govern")
        loaded = load_config(config_path)
        if len(loaded.config.upstream_list) != 1:
            raise ConfigError(
                "helio wrap serves one upstream: use 'upstream', not several 'upstreams'", source=config_path
            )
        return loaded
    replace = {"upstream": upstream_section(command), "upstreams": None}
    if config_path is not None:
        return load_config(config_path, replace=replace)
    return load_config_text(DEFAULT_WRAP_CONFIG, path=NO_CONFIG_PATH, replace=replace)


async def serve_wrapped(
    app: HelioApp, *, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None
) -> int:
    """Run ``app`` with MCP on stdin/stdout until stdin closes (or SIGINT/SIGTERM); the exit code."""
    upstream = app.upstream
    if isinstance(upstream, StdioUpstream):
        problem = upstream.command_problem()
        if problem is not None:
            app.say(f"Error: cannot start the upstream: {problem}")
            return StartupError.exit_code
    if isinstance(upstream, MessageUpstream):
        upstream.idle_seconds = math.inf  # one client for the life of the process: never expire its session
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    server: StdioServer | None = None
    try:
        try:
            await app.start()
        except HelioProxyError as exc:
            app.say(f"Error: {exc}")
            return exc.exit_code
        reader, write = await open_stdio(stdin, stdout, limit=app.loaded.config.listen.max_body_bytes + 1)
        listen = app.loaded.config.listen
        server = StdioServer(
            app.gateway, reader, write, max_line_bytes=listen.max_body_bytes, limits=listen.json_limits
        )
        serving = server

        def stopped(session_id: str, reason: str) -> None:
            if session_id == serving.session_id:
                serving.stop(reason)

        if isinstance(upstream, MessageUpstream):
            upstream.on_stopped = stopped
        serve = asyncio.ensure_future(server.serve())
        interrupt = asyncio.ensure_future(interrupted.wait())
        await asyncio.wait({serve, interrupt}, return_when=asyncio.FIRST_COMPLETED)
        server.stop()
        await serve
        interrupt.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await interrupt
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await app.stop()
    if server.fatal is not None:
        app.say(f"Error: {server.fatal}")
        return StartupError.exit_code
    return 0


def run_wrap(loaded: LoadedConfig) -> int:
    """``helio wrap`` on uvloop when available (non-dumpable: see :mod:`.hardening`); the exit code."""
    forbid_inspection()
    app = HelioApp(loaded, serve_mcp=False, inherit_environment=True)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard] on Linux/macOS
        return asyncio.run(serve_wrapped(app))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve_wrapped(app))
