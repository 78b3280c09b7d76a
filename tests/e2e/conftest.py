"""e2e helpers: free ports, real subprocesses, bounded waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.peers.launch import free_port as free_port  # the e2e tests import it from here

STARTUP_SECONDS = 30.0


@pytest.fixture(scope="session", autouse=True)
def _bytecode_compiled_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every Python process the tests start (``helio``, upstreams, peers, agents: over a hundred) reads
    bytecode written by the first one instead of compiling some 600 modules again. Where the
    machine sets ``PYTHONDONTWRITEBYTECODE`` (Python's Docker images do), compiling was about half
    of each ``helio`` start-up. The bytecode goes to a directory of the session's own (pytest
    removes old ones), never beside the sources."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
        patch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path_factory.mktemp("pycache")))
        yield


def wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(
                f"process exited with {process.returncode} before listening on {port}:\n{out}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on port {port} within {timeout}s")


@contextmanager
def running(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run a command with output captured; SIGTERM and reap it afterwards."""
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    failed = False
    try:
        yield process
    except BaseException:
        failed = True
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stdout is not None and not process.stdout.closed:
            if failed:  # the command's own account of what went wrong, in the test's report
                print(f"--- output of {' '.join(args[:3])} ---\n{process.stdout.read()}")
            process.stdout.close()  # else a later test trips over the unclosed pipe (ResourceWarning)


@contextmanager
def demo_upstream(port: int, log: Path) -> Iterator[subprocess.Popen[str]]:
    """The demo MCP server on ``port``; its output goes to a file rather than a pipe nobody drains."""
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "helio_proxy.demo.server", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for_port(port, server)
            yield server
        finally:
            server.terminate()
            server.wait(timeout=10)


@pytest.fixture(scope="session")
def _shared_demo_upstream(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    with demo_upstream(port, tmp_path_factory.mktemp("demo-upstream") / "upstream.log") as server:
        yield port, server


@pytest.fixture
def demo_port(_shared_demo_upstream: tuple[int, subprocess.Popen[str]]) -> int:
    """The port of one demo MCP server for the whole session: it is stateless (every call is
    answered from canned data), so tests share it rather than each starting its own. A test that
    needs the upstream to go down starts its own with :func:`demo_upstream`."""
    port, server = _shared_demo_upstream
    assert server.poll() is None, f"the shared demo MCP server exited with {server.returncode}"
    return port


def helio(*args: str) -> list[str]:
    return [sys.executable, "-m", "helio_proxy", *args]


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()
