"""Helio's cost per call next to a direct call, a bare forwarder and the Python MCP proxies.

    uv run nox -s bench                       # everything, as published in docs/performance.md
    uv run python benchmarks/bench_compare.py [--rounds 3] [--calls 400] [--duration 8]
        [--targets direct,bare,helio,helio-w2,fastmcp,mcp-proxy,contextforge] [--json out.json]

Every target sits in front of the same upstream: a raw JSON-RPC server in its own process
(httptools + asyncio, no MCP SDK) that answers ``initialize``, ``tools/list`` and ``tools/call``
in a few microseconds, so what is measured is each proxy's own work. The targets:

- ``direct``: the upstream itself;
- ``bare``: a pure-ASGI forwarder (uvicorn + uvloop + httptools, one pooled aiohttp client, no
  governance) — the floor for a Python proxy;
- ``helio``: ``helio start`` with 20 rules (tool globs, annotations, input conditions and a
  ``rate_limit`` that the called tool does not match), batched audit on SQLite;
  ``audit.writer: auto``, which is a writer process with at least two CPUs per worker;
  ``helio-w2``: the same with ``--workers 2``; ``helio-process`` and ``helio-thread``: the same
  with ``audit.writer: process`` (the audit rows built and committed by a child process) and
  ``thread`` (a thread of the proxy's process);
- ``fastmcp``: FastMCP's proxy (``FastMCP.as_proxy`` / ``create_proxy`` over streamable HTTP);
- ``mcp-proxy``: sparfenyuk's ``mcp-proxy`` serving streamable HTTP in front of a stdio child that is
  itself ``mcp-proxy --transport streamablehttp UPSTREAM`` (it bridges HTTP to stdio and back; there is
  no HTTP-to-HTTP mode);
- ``contextforge``: IBM's ``mcp-contextforge-gateway`` with the upstream registered as a gateway and
  a virtual server over its tools.

The peers are installed by this script into throwaway venvs under ``.tools/bench/`` (from PyPI, with
``uv``); one that does not install or does not start is reported as such, not silently dropped.

Each target gets an MCP handshake (``initialize`` + ``notifications/initialized``; the session id it
hands out, if any, is sent with every call). Then, interleaved round by round so the noise of a
shared machine hits every target alike:

- **latency**: ``--calls`` sequential ``tools/call`` over one keep-alive connection (aiohttp), p50/p99
  (a target slower than ``--latency-budget`` seconds per round gets fewer calls; the JSON says how many);
- **throughput**: ``wrk -t1 -c32`` for ``--duration`` seconds POSTing the same ``tools/call`` (the
  in-script aiohttp load generator with 32 connections when wrk is not installed), calls/s; a
  non-2xx answer or an answer without ``"result"`` counts as an error and is reported. For the
  Helio targets, the audit records committed during each run are counted too, per call served: a
  proxy whose audit writer falls behind would look faster than it can sustain. For every proxy
  (all its processes, children included), the CPU it used during each run is read from ``/proc``
  per call served, with its busiest thread's share: a thread near 100 % of a core (an asyncio
  proxy's event loop) is what limits its calls/s.

Prints a table and writes the figures as JSON (``--json``, default ``.tools/bench/compare.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools" / "bench"
PROTOCOL = "2025-06-18"
RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}
ECHO_TOOL = {
    "name": "echo",
    "description": "Echo the text back.",
    "inputSchema": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["text"],
    },
    "annotations": {
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": False,
    },
}
CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "echo", "arguments": {"text": "hello", "n": 7}},
}

# ----------------------------------------------------------------------------------------------
# The upstream: raw JSON-RPC over HTTP/1.1 keep-alive (run in its own process).
# ----------------------------------------------------------------------------------------------


def answer(message: Any) -> bytes | None:
    """The upstream's JSON-RPC answer to one message (``None``: a notification, 202)."""
    if not isinstance(message, dict) or "id" not in message:
        return None
    method = message.get("method")
    result: Any
    if method == "tools/call":
        result = RESULT
    elif method == "tools/list":
        result = {"tools": [ECHO_TOOL]}
    elif method == "initialize":
        params = message.get("params") or {}
        result = {
            "protocolVersion": params.get("protocolVersion", PROTOCOL),
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "bench-upstream", "version": "1.0"},
        }
    elif method == "ping":
        result = {}
    else:
        error = {"code": -32601, "message": f"method not found: {method}"}
        return json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": error}).encode()
    return json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}).encode()


def serve_upstream(port: int) -> None:
    import httptools  # pyright: ignore[reportMissingTypeStubs]
    import uvloop

    class Upstream(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.body = bytearray()
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                assert self.transport is not None
                self.transport.close()

        def on_message_begin(self) -> None:
            self.body.clear()

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            assert self.transport is not None
            method = self.parser.get_method()
            if method != b"POST":
                self.respond(b"405 Method Not Allowed", b"", b"text/plain")
                return
            try:
                payload = answer(json.loads(self.body))
            except ValueError:
                self.respond(b"400 Bad Request", b"", b"text/plain")
                return
            if payload is None:
                self.respond(b"202 Accepted", b"", b"text/plain")
            else:
                self.respond(b"200 OK", payload, b"application/json")

        def respond(self, status: bytes, body: bytes, content_type: bytes) -> None:
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 "
                + status
                + b"\r\ncontent-type: "
                + content_type
                + b"\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


# ----------------------------------------------------------------------------------------------
# The bare forwarder: pure ASGI, uvicorn + uvloop + httptools, one pooled aiohttp client.
# ----------------------------------------------------------------------------------------------

FORWARDED_REQUEST = (b"content-type", b"accept", b"mcp-session-id", b"mcp-protocol-version")
FORWARDED_RESPONSE = ("content-type", "mcp-session-id")


def forwarder_app(upstream: str) -> Callable[..., Any]:
    import aiohttp

    client: list[aiohttp.ClientSession] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    connector = aiohttp.TCPConnector(limit=256)
                    client.append(aiohttp.ClientSession(connector=connector))
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await client[0].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 405, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        chunks: list[bytes] = []
        more = True
        while more:
            event = await receive()
            chunks.append(event.get("body", b""))
            more = event.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k in FORWARDED_REQUEST}
        async with client[0].post(upstream, data=b"".join(chunks), headers=headers) as response:
            body = await response.read()
            out = [
                (k.encode(), response.headers[k].encode())
                for k in FORWARDED_RESPONSE
                if k in response.headers
            ]
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            await send({"type": "http.response.body", "body": body})

    return app


def serve_forwarder(port: int, upstream: str) -> None:
    import uvicorn

    uvicorn.run(
        forwarder_app(upstream),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )


# ----------------------------------------------------------------------------------------------
# Helio's config: 20 rules, none of which stops the benchmark's call.
# ----------------------------------------------------------------------------------------------


def helio_rules() -> str:
    rules = [
        "- {name: no-deletes, match: {tool: 'delete_*'}, action: deny}",
        "- {name: no-drops, match: {tool: '{drop,truncate}_*'}, action: deny}",
        "- {name: no-admin, match: {tool: 'admin.**'}, action: deny}",
        "- {name: no-shell, match: {tool: '{run,exec}_{shell,command,sql}'}, action: deny}",
        "- {name: no-writes-prod, match: {tool: 'write_?*', environment: production}, action: deny}",
        "- {name: destructive, match: {annotations: {destructiveHint: true}}, action: deny}",
        "- {name: open-world-writes, match: {annotations: {readOnlyHint: false, openWorldHint: true}},"
        " action: deny}",
        "- {name: non-idempotent, match: {tool: 'send_*', annotations: {idempotentHint: false}}, action: deny}",
        "- {name: big-payments, match: {tool: 'create_payment', input: {'$.amount': {gt: 1000},"
        " '$.currency': {in: [GBP, EUR]}}}, action: deny}",
        "- {name: restricted-skus, match: {input: {'$.items[*].sku': {regex: '^RESTRICTED-'}}}, action: deny}",
        "- {name: no-bcc, match: {tool: send_email, input: {'$.bcc': {exists: true}}}, action: deny}",
        "- {name: internal-only, match: {tool: send_email, input: {'$.to': {not_in: [a@example.com]}}},"
        " action: deny}",
        "- {name: secret-text, match: {input: {'$.text': {regex: '(?i)password|secret|api[_-]?key'}}},"
        " action: deny}",
        "- {name: huge-n, match: {input: {'$.n': {gt: 1000000}}}, action: deny}",
        "- {name: refunds-rate, match: {tool: 'refund_*'}, action: rate_limit,"
        " limits: {max_calls: 100, window: 1h, key: tool}}",
        "- {name: no-exports, match: {tool: '*_export'}, action: deny}",
        "- {name: no-secrets-tools, match: {tool: '*secret*'}, action: deny}",
        "- {name: tier, match: {input: {'$.customer.tier': {eq: blocked}}}, action: deny}",
        "- {name: dry-migrations, match: {tool: 'migrate_*'}, action: dry_run}",
        "- {name: github, match: {tool: 'github.{delete,force}_*'}, action: deny}",
    ]
    assert len(rules) == 20
    return "policies:\n  default: allow\n  rules:\n" + textwrap.indent("\n".join(rules), "    ") + "\n"


def helio_config(upstream: str, port: int, workdir: Path, writer: str = "auto") -> Path:
    path = workdir / "helio.yaml"
    path.write_text(
        "version: '1'\n"
        f"upstream:\n  url: '{upstream}'\n  request_timeout: 10s\n"
        f"listen:\n  host: 127.0.0.1\n  port: {port}\n"
        "dashboard:\n  enabled: false\n"
        f"audit:\n  path: '{workdir / 'audit.db'}'\n  durability: batched\n  writer: {writer}\n"
        "environment: staging\n" + helio_rules()
    )
    os.chmod(path, 0o600)
    return path


# ----------------------------------------------------------------------------------------------
# Targets: how each one is installed, started and found ready.
# ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"not listening on {port} after {timeout:.0f}s")


def peer_python(name: str, packages: list[str], log: Callable[[str], None]) -> Path:
    """A venv under .tools/bench/NAME holding ``packages`` (installed once; idempotent)."""
    venv = TOOLS / name
    python = venv / "bin" / "python"
    marker = venv / ".bench-installed"
    if marker.exists() and marker.read_text() == " ".join(packages):
        return python
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is not on PATH (export PATH=/path/to/uv:$PATH)")
    log(f"installing {' '.join(packages)} into {venv.relative_to(ROOT)} ...")
    if not python.exists():
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    done = subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(packages)} failed: {done.stderr.strip()[-600:]}")
    marker.write_text(" ".join(packages))
    return python


FASTMCP_RUNNER = """
import sys
url, port = sys.argv[1], int(sys.argv[2])
try:
    from fastmcp.server import create_proxy
    proxy = create_proxy(url, name="bench")
except ImportError:
    from fastmcp import FastMCP
    proxy = FastMCP.as_proxy(url, name="bench")
proxy.run(transport="http", host="127.0.0.1", port=port, log_level="warning", show_banner=False)
"""


@dataclass
class Target:
    name: str
    label: str
    url: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    note: str = ""
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request (ContextForge's bearer token)."""


class Launcher:
    def __init__(self, upstream: str, workdir: Path, log: Callable[[str], None]) -> None:
        self.upstream = upstream
        self.workdir = workdir
        self.log = log

    def spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def start(self, target: Target) -> None:
        port = free_port()
        if target.name == "direct":
            target.url = self.upstream
            return
        if target.name == "bare":
            argv = [sys.executable, __file__, "forwarder", "--port", str(port), "--upstream", self.upstream]
            target.processes.append(self.spawn(argv, target.name))
            wait_port(port, target.processes[0], 30)
            target.url = f"http://127.0.0.1:{port}/mcp"
            return
        if target.name in ("helio", "helio-w2", "helio-process", "helio-thread"):
            workdir = self.workdir / target.name
            workdir.mkdir()
            writer = {"helio-process": "process", "helio-thread": "thread"}.get(target.name, "auto")
            config = helio_config(self.upstream, port, workdir, writer)
            helio = shutil.which("helio") or str(Path(sys.executable).parent / "helio")
            argv = [helio, "start", "-c", str(config), "--no-hot-reload"]
            if target.name == "helio-w2":
                argv += ["--workers", "2"]
            target.processes.append(self.spawn(argv, target.name))
            wait_port(port, target.processes[0], 60)
            target.url = f"http://127.0.0.1:{port}/mcp"
            return
        if target.name == "fastmcp":
            python = peer_python("fastmcp", ["fastmcp"], self.log)
            target.note = version_of(python, "fastmcp")
            runner = self.workdir / "fastmcp_proxy.py"
            runner.write_text(FASTMCP_RUNNER)
            target.processes.append(
                self.spawn([str(python), str(runner), self.upstream, str(port)], target.name)
            )
            wait_port(port, target.processes[0], 60)
            target.url = f"http://127.0.0.1:{port}/mcp"
            return
        if target.name == "mcp-proxy":
            python = peer_python("mcp-proxy", ["mcp-proxy"], self.log)
            target.note = version_of(python, "mcp-proxy")
            exe = str(python.parent / "mcp-proxy")
            argv = [
                exe,
                "--host", "127.0.0.1",
                "--port", str(port),
                "--",
                exe, "--transport", "streamablehttp", self.upstream,
            ]  # fmt: skip
            target.processes.append(self.spawn(argv, target.name))
            wait_port(port, target.processes[0], 60)
            target.url = f"http://127.0.0.1:{port}/mcp"
            return
        if target.name == "contextforge":
            self.start_contextforge(target, port)
            return
        raise ValueError(f"unknown target {target.name}")

    def start_contextforge(self, target: Target, port: int) -> None:
        python = peer_python("mcp-contextforge-gateway", ["mcp-contextforge-gateway"], self.log)
        target.note = version_of(python, "mcp-contextforge-gateway")
        workdir = self.workdir / "contextforge"
        workdir.mkdir()
        secret = "bench-jwt-secret-0123456789abcdef0123456789abcdef"  # noqa: S105 - a throwaway local gateway
        env = {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{workdir / 'mcp.db'}",
            "AUTH_REQUIRED": "true",
            "MCPGATEWAY_UI_ENABLED": "false",
            "MCPGATEWAY_ADMIN_API_ENABLED": "true",
            "JWT_SECRET_KEY": secret,
            "BASIC_AUTH_PASSWORD": "bench-password-0123456789",
            "PLATFORM_ADMIN_PASSWORD": "bench-password-0123456789",
            "LOG_LEVEL": "ERROR",
            "CACHE_TYPE": "memory",
            "SSRF_PROTECTION_ENABLED": "false",
            "SSRF_ALLOW_LOCALHOST": "true",
            "SSRF_ALLOW_PRIVATE_NETWORKS": "true",
            "PLUGINS_ENABLED": "false",
            "OBSERVABILITY_ENABLED": "false",
        }
        exe = str(python.parent / "mcpgateway")
        target.processes.append(
            self.spawn([exe, "--host", "127.0.0.1", "--port", str(port)], target.name, {**env})
        )
        wait_port(port, target.processes[0], 180)
        base = f"http://127.0.0.1:{port}"
        token = subprocess.run(
            [str(python), "-m", "mcpgateway.utils.create_jwt_token", "--username", "admin@example.com",
             "--exp", "120", "--admin", "--secret", secret],
            capture_output=True, text=True, check=True, env={**os.environ, **env},
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        gateway = http_json(
            f"{base}/gateways",
            {"name": "bench", "url": self.upstream, "transport": "STREAMABLEHTTP"},
            auth,
        )
        tools = http_json(f"{base}/tools", None, auth)
        tool_ids = [t["id"] for t in tools if t.get("gatewayId", t.get("gateway_id")) == gateway.get("id")]
        server = http_json(
            f"{base}/servers",
            {"server": {"name": "bench-server", "associated_tools": tool_ids}},
            auth,
        )
        target.url = f"{base}/servers/{server['id']}/mcp"
        target.headers = {"authorization": auth["authorization"]}
        target.note += " (JWT bearer on every call; upstream registered as a gateway, one virtual server)"


def http_json(url: str, body: Any, headers: dict[str, str]) -> Any:
    import urllib.error
    import urllib.request

    assert url.startswith("http://127.0.0.1:")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - a local http URL (asserted above)
        url, data=data, headers=headers, method="GET" if body is None else "POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{request.method} {url}: {exc.code} {exc.read()[:300]!r}") from exc


def audit_rows(path: Path) -> int | None:
    """How many records a Helio target's SQLite audit holds (``None``: not a Helio target)."""
    if not path.exists():
        return None
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM audit_records").fetchone()[0])


def version_of(python: Path, dist: str) -> str:
    done = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"{dist} {done.stdout.strip()}" if done.returncode == 0 else dist


def stop(target: Target) -> None:
    for process in target.processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    for process in target.processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# ----------------------------------------------------------------------------------------------
# Measuring.
# ----------------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _ticks(stat: str) -> int:
    """utime + stime of a ``/proc/.../stat`` line (fields 14 and 15; the name may hold spaces)."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (Linux ``/proc``; just ``root`` elsewhere)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue += parents.get(pid, [])
    return found


@dataclass
class CpuSample:
    """CPU seconds a target's processes had used, in all and per thread, at one moment."""

    total: float = 0.0
    threads: dict[tuple[int, int], float] = field(default_factory=dict)

    @classmethod
    def of(cls, roots: list[int]) -> CpuSample:
        sample = cls()
        for pid in [p for root in roots for p in process_tree(root)]:
            with contextlib.suppress(OSError, IndexError, ValueError):
                sample.total += _ticks(Path(f"/proc/{pid}/stat").read_text()) / CLOCK_TICKS
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        ticks = _ticks((task / "stat").read_text())
                        sample.threads[(pid, int(task.name))] = ticks / CLOCK_TICKS
        return sample


def cpu_per_call(
    before: CpuSample, after: CpuSample, calls: float, seconds: float
) -> tuple[float, float, float]:
    """What a throughput run cost the target's processes: (CPU µs per call served, in all; the
    busiest thread's µs per call; that thread's share of one core over the run)."""
    if calls <= 0 or seconds <= 0:
        return 0.0, 0.0, 0.0
    busiest = max((used - before.threads.get(key, 0.0) for key, used in after.threads.items()), default=0.0)
    return (after.total - before.total) / calls * 1e6, busiest / calls * 1e6, busiest / seconds


BASE_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def handshake(url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """``initialize`` + ``notifications/initialized``; the headers every later call carries."""
    import aiohttp

    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    async with aiohttp.ClientSession() as session:
        first = {**BASE_HEADERS, **(extra or {})}
        async with session.post(url, json=init, headers=first) as response:
            body = await response.text()
            if response.status != 200 or "protocolVersion" not in body:
                raise RuntimeError(f"initialize answered {response.status}: {body[:300]}")
            headers = {**first, "mcp-protocol-version": PROTOCOL}
            if "mcp-session-id" in response.headers:
                headers["mcp-session-id"] = response.headers["mcp-session-id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        async with session.post(url, json=note, headers=headers) as response:
            await response.read()
        async with session.post(url, json=CALL, headers=headers) as response:
            body = await response.text()
            if response.status != 200 or '"result"' not in body or '"ok"' not in body:
                raise RuntimeError(f"tools/call answered {response.status}: {body[:300]}")
    return headers


async def latencies(
    url: str, headers: dict[str, str], calls: int, budget: float = float("inf")
) -> tuple[list[float], int]:
    """``calls`` sequential calls (fewer if they take more than ``budget`` seconds in all)."""
    import aiohttp

    body = json.dumps(CALL).encode()
    out: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=1)
    deadline = time.perf_counter() + budget
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(calls):
            if time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                text = await response.read()
            out.append(time.perf_counter() - started)
            if response.status != 200 or b'"result"' not in text:
                errors += 1
    return out, errors


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
{headers}
local errors = 0
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, '"result"', 1, true) then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH_ERRORS %d\\n", errors))
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for ASCII


def wrk_throughput(url: str, headers: dict[str, str], duration: float, connections: int) -> tuple[float, int]:
    lines = "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=lua_string(json.dumps(CALL)), headers=lines))
    try:
        done = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration:g}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration + 60,
        )
    finally:
        os.unlink(script.name)
    rps = errors = 0.0
    for line in done.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        elif line.startswith("BENCH_ERRORS"):
            errors += float(line.split()[1])
        elif line.strip().startswith("Socket errors:"):  # connect N, read N, write N, timeout N
            errors += sum(float(part.split()[-1]) for part in line.split(":", 1)[1].split(","))
    return rps, int(errors)


async def aiohttp_throughput(
    url: str, headers: dict[str, str], duration: float, connections: int
) -> tuple[float, int]:
    import aiohttp

    body = json.dumps(CALL).encode()
    count = errors = 0
    deadline = time.perf_counter() + duration
    timeout = aiohttp.ClientTimeout(total=10)  # wrk's --timeout

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal count, errors
        while time.perf_counter() < deadline:
            try:
                async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
                    text = await response.read()
            except (TimeoutError, aiohttp.ClientError):
                # As wrk counts a timed-out or broken request: an error, and the run goes on.
                errors += 1
                continue
            count += 1
            if response.status != 200 or b'"result"' not in text:
                errors += 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        return count / (time.perf_counter() - started), errors


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


@dataclass
class Figures:
    name: str
    label: str
    note: str = ""
    error: str = ""
    calls: int = 0
    latency_errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    rps_rounds: list[float] = field(default_factory=list)
    rps: float | None = None
    throughput_errors: int = 0
    rps_vs_bare: float | None = None
    audit_pace_rounds: list[float] = field(default_factory=list)
    """Helio only: audit records committed during each c=32 run, per call it served (1.0: the
    audit kept pace; well below it, records were waiting in the writer's queue)."""
    cpu_rounds: list[tuple[float, float, float]] = field(default_factory=list)
    """Each c=32 run: the target's processes' CPU µs per call served, its busiest thread's µs per
    call, and that thread's share of one core (not for ``direct``: the upstream serves it)."""


LABELS = {
    "direct": "direct (no proxy)",
    "bare": "bare ASGI forwarder",
    "helio": "helio start (20 rules)",
    "helio-w2": "helio start --workers 2",
    "helio-process": "helio start, writer process",
    "helio-thread": "helio start, writer thread",
    "fastmcp": "FastMCP proxy",
    "mcp-proxy": "mcp-proxy",
    "contextforge": "ContextForge gateway",
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    workdir = Path(tempfile.mkdtemp(prefix="helio-bench-"))
    upstream_port = free_port()
    upstream_proc = subprocess.Popen(
        [sys.executable, __file__, "upstream", "--port", str(upstream_port)], start_new_session=True
    )
    targets = [Target(n, LABELS[n]) for n in names]
    try:
        wait_port(upstream_port, upstream_proc, 30)
        launcher = Launcher(f"http://127.0.0.1:{upstream_port}/mcp", workdir, log)
        headers: dict[str, dict[str, str]] = {}
        for target in targets:
            try:
                launcher.start(target)
                headers[target.name] = asyncio.run(handshake(target.url, target.headers))
                log(f"{target.name}: ready at {target.url} {target.note}")
            except Exception as exc:
                target.error = f"{type(exc).__name__}: {exc}"[:500]
                logfile = workdir / f"{target.name}.log"
                if logfile.exists():
                    log(
                        f"--- {logfile.name} (last lines) ---\n"
                        + "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
                    )
                log(f"{target.name}: NOT MEASURED: {target.error}")
                stop(target)
        live = [t for t in targets if not t.error]
        samples: dict[str, list[float]] = {t.name: [] for t in live}
        lat_errors: dict[str, int] = dict.fromkeys(samples, 0)
        rps: dict[str, list[float]] = {t.name: [] for t in live}
        rps_errors: dict[str, int] = dict.fromkeys(samples, 0)
        pace: dict[str, list[float]] = {t.name: [] for t in live}
        cpu: dict[str, list[tuple[float, float, float]]] = {t.name: [] for t in live}
        for target in live:  # warm-up
            asyncio.run(latencies(target.url, headers[target.name], args.warmup, args.latency_budget))
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}: latency (c=1)")
            for target in live:
                values, errors = asyncio.run(
                    latencies(target.url, headers[target.name], args.calls, args.latency_budget)
                )
                samples[target.name] += values
                lat_errors[target.name] += errors
            log(f"round {r + 1}/{args.rounds}: throughput (c={args.connections})")
            for target in live:
                audit_db = workdir / target.name / "audit.db"
                rows_before = audit_rows(audit_db)
                roots = [process.pid for process in target.processes]
                cpu_before, started = CpuSample.of(roots), time.perf_counter()
                if use_wrk:
                    value, errors = wrk_throughput(
                        target.url, headers[target.name], args.duration, args.connections
                    )
                else:
                    value, errors = asyncio.run(
                        aiohttp_throughput(target.url, headers[target.name], args.duration, args.connections)
                    )
                cpu_after, seconds = CpuSample.of(roots), time.perf_counter() - started
                if roots and value:
                    # Calls served in wrk's own window; the CPU is read just outside it (idle then).
                    served = value * args.duration
                    cpu[target.name].append(cpu_per_call(cpu_before, cpu_after, served, seconds))
                rows_after = audit_rows(audit_db)
                if rows_before is not None and rows_after is not None and value:
                    pace[target.name].append((rows_after - rows_before) / (value * args.duration))
                rps[target.name].append(value)
                rps_errors[target.name] += errors
    finally:
        for target in targets:
            stop(target)
        stop(Target("upstream", "", processes=[upstream_proc]))
        shutil.rmtree(workdir, ignore_errors=True)

    figures: list[Figures] = []
    for target in targets:
        f = Figures(target.name, target.label, target.note, target.error)
        if not target.error:
            f.calls = len(samples[target.name])
            f.latency_errors = lat_errors[target.name]
            f.p50_ms = quantile(samples[target.name], 50)
            f.p99_ms = quantile(samples[target.name], 99)
            f.rps_rounds = rps[target.name]
            f.rps = statistics.median(rps[target.name])
            f.throughput_errors = rps_errors[target.name]
            f.audit_pace_rounds = pace[target.name]
            f.cpu_rounds = cpu[target.name]
        figures.append(f)
    by_name = {f.name: f for f in figures}
    direct = by_name.get("direct")
    bare = by_name.get("bare")
    for f in figures:
        if f.p50_ms is None:
            continue
        if direct and direct.p50_ms is not None and direct.p99_ms is not None and f.p99_ms is not None:
            f.added_p50_ms = f.p50_ms - direct.p50_ms
            f.added_p99_ms = f.p99_ms - direct.p99_ms
        if bare and bare.rps and f.rps is not None:
            f.rps_vs_bare = f.rps / bare.rps
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "cpu": cpu_model(),
        },
        "settings": {
            "rounds": args.rounds,
            "calls_per_round": args.calls,
            "latency_budget_seconds": args.latency_budget,
            "throughput_seconds_per_round": args.duration,
            "connections": args.connections,
            "load_generator": "wrk -t1" if use_wrk else "aiohttp (in-script)",
        },
        "targets": [asdict(f) for f in figures],
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def table(report: dict[str, Any]) -> str:
    def fmt(value: float | None, spec: str, prefix: str = "") -> str:
        return "-" if value is None else prefix + format(value, spec)

    s = report["settings"]
    lines = [
        f"{report['date']}  {report['machine']['cpu']} x{report['machine']['cpus']}  Python {report['machine']['python']}",
        f"c=1: {s['rounds']}x{s['calls_per_round']} sequential calls; c={s['connections']}: {s['rounds']}x"
        f"{s['throughput_seconds_per_round']:g}s with {s['load_generator']}; rounds interleaved",
        "",
        f"{'target':<28}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}{'calls/s':>10}{'vs bare':>9}  errors",
    ]
    for t in report["targets"]:
        if t["error"]:
            lines.append(f"{t['label']:<28}  not measured: {t['error'][:160]}")
            continue
        added50 = fmt(t["added_p50_ms"], ".3f", "+" if (t["added_p50_ms"] or 0) >= 0 else "")
        added99 = fmt(t["added_p99_ms"], ".3f", "+" if (t["added_p99_ms"] or 0) >= 0 else "")
        lines.append(
            f"{t['label']:<28}{fmt(t['p50_ms'], '.3f'):>9}{fmt(t['p99_ms'], '.3f'):>9}{added50:>9}{added99:>9}"
            f"{fmt(t['rps'], ',.0f'):>10}{fmt(t['rps_vs_bare'], '.2f'):>9}  {t['latency_errors'] + t['throughput_errors']}"
        )
    paces = [
        f"  {t['name']}: " + " / ".join(f"{value:.0%}" for value in t["audit_pace_rounds"])
        for t in report["targets"]
        if t.get("audit_pace_rounds")
    ]
    if paces:
        lines += [
            "",
            "audit records committed during each c=32 run, per call served (100 %: kept pace):",
            *paces,
        ]
    costs = [
        f"  {t['name']}: "
        + " / ".join(
            f"{total:.0f} µs ({thread:.0f} µs, {share:.0%})" for total, thread, share in t["cpu_rounds"]
        )
        for t in report["targets"]
        if t.get("cpu_rounds")
    ]
    if costs:
        lines += [
            "",
            f"CPU per call served in each c={s['connections']} run: the proxy's processes in all "
            "(its busiest thread, and that thread's share of one core):",
            *costs,
        ]
    notes = [f"  {t['name']}: {t['note']}" for t in report["targets"] if t["note"]]
    if notes:
        lines += ["", "versions:", *notes]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("upstream", help="(internal) run the raw JSON-RPC upstream")
    up.add_argument("--port", type=int, required=True)
    fw = sub.add_parser("forwarder", help="(internal) run the bare ASGI forwarder")
    fw.add_argument("--port", type=int, required=True)
    fw.add_argument("--upstream", required=True)
    parser.add_argument("--targets", default="direct,bare,helio,helio-w2,fastmcp,mcp-proxy,contextforge")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=400, help="sequential calls per target per round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--latency-budget",
        type=float,
        default=20.0,
        help="at most this many seconds of sequential calls per target per round (slow peers take fewer)",
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per target per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-wrk", action="store_true", help="use the in-script aiohttp load generator")
    parser.add_argument("--json", type=Path, default=TOOLS / "compare.json")
    args = parser.parse_args()
    if args.command == "upstream":
        serve_upstream(args.port)
        return
    if args.command == "forwarder":
        serve_forwarder(args.port, args.upstream)
        return
    report = run(args)
    print(table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
