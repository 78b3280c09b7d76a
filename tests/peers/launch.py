"""Starting peer processes for the e2e tests: output to a log file (never a pipe nobody reads), a
bounded wait for the port, and the log's tail in every failure message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

STARTUP_SECONDS = 30.0


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now, and never one this process handed out before: the
    kernel may give the same free port twice once its probe socket is closed, and the two
    processes given it then race for it (seen: one replica's dashboard port was another's
    sideband port, and the replica that lost exited before listening)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def log_tail(log: Path, limit: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


@contextmanager
def serving(
    args: list[str],
    port: int,
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` until the block ends; yield once something listens on ``port``."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            args, stdout=sink, stderr=subprocess.STDOUT, env=dict(env or os.environ), cwd=cwd
        )
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                if process.poll() is not None:
                    raise AssertionError(
                        f"{args[0]} exited with {process.returncode} before listening on {port}:\n{log_tail(log)}"
                    )
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"nothing listened on {port} within {STARTUP_SECONDS}s:\n{log_tail(log)}"
                        ) from None
                    time.sleep(0.05)
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)


def helio_start(config: Path) -> list[str]:
    return [sys.executable, "-m", "helio_proxy", "start", "-c", str(config)]


def write_proxy_config(
    path: Path, *, upstream_url: str, port: int, extra: str = "", pin: str = "auto", origins: bool = False
) -> Path:
    """A proxy config for one upstream; ``origins`` allows the proxy's own loopback origin."""
    allowed = (
        f"  allowed_origins: ['http://127.0.0.1:{port}', 'http://localhost:{port}']\n" if origins else ""
    )
    path.write_text(
        "version: '1'\n"
        f"upstream:\n  url: '{upstream_url}'\n  request_timeout: 20s\n  protocol_version: '{pin}'\n"
        f"listen:\n  port: {port}\n{allowed}"
        f"audit:\n  path: '{path.parent / (path.stem + '-audit.db')}'\n"
        "dashboard:\n  enabled: false\n" + extra
    )
    return path
