"""Hot reload end to end: ``helio start`` and the demo MCP server as real processes."""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import free_port, helio, running, wait_for_port

pytestmark = pytest.mark.e2e

CONFIG = """version: '1'
upstream:
  url: 'http://127.0.0.1:{upstream_port}/mcp'
listen:
  port: {port}
audit:
  path: '{audit}'
dashboard:
  enabled: false
policies:
  default: allow
  rules:
    - name: block-destructive
      match:
        annotations:
          destructiveHint: true
      action: deny
    - name: allow-reads
      match:
        annotations:
          readOnlyHint: true
      action: allow
"""

NO_WEATHER = """    - name: no-weather
      match: {tool: get_weather}
      action: deny
"""


class Output:
    """Collects a process's output lines on a thread so the test can wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        self._stream = process.stdout
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        with contextlib.suppress(ValueError, OSError):  # the stream is closed when the process is reaped
            for line in self._stream:
                self._queue.put(line)

    def seen(self, text: str) -> bool:
        """Whether any line so far (without waiting for more) contains ``text``."""
        while not self._queue.empty():
            self.lines.append(self._queue.get_nowait())
        return any(text in line for line in self.lines)

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if text in line:
                return line
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line containing {text!r} within {timeout}s; got:\n{''.join(self.lines)}")


def call(url: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    response = httpx.post(url, json=body, headers={"accept": "application/json"}, timeout=5)
    assert response.status_code == 200
    return response.json()


def blocked_by(answer: dict[str, Any]) -> str | None:
    error = answer.get("error")
    return error["data"]["rule"] if error and error.get("code") == -32001 else None


@dataclass
class Proxy:
    url: str
    config: Path
    output: Output
    process: subprocess.Popen[str]


@contextlib.contextmanager
def proxy_in_front_of_demo(tmp_path: Path, *extra_args: str) -> Iterator[Proxy]:
    """The demo MCP server and ``helio start`` in front of it, as real processes on free ports."""
    upstream_port, port = free_port(), free_port()
    config = tmp_path / "helio.yaml"
    config.write_text(CONFIG.format(upstream_port=upstream_port, port=port, audit=tmp_path / "audit.db"))
    upstream_command = [
        sys.executable,
        "-m",
        "helio_proxy.demo.server",
        "--port",
        str(upstream_port),
        "--json",
    ]
    with running(upstream_command) as upstream:
        wait_for_port(upstream_port, upstream)
        with running(helio("start", "-c", str(config), *extra_args)) as process:
            try:
                output = Output(process)
                output.wait_for("Config: ")
                yield Proxy(f"http://127.0.0.1:{port}/mcp", config, output, process)
            finally:
                process.terminate()
                process.wait(timeout=10)
                assert process.stdout is not None
                process.stdout.close()
        assert upstream.stdout is not None
        upstream.stdout.close()


def test_editing_the_config_takes_effect_without_restart_and_a_bad_edit_keeps_the_old_rules(
    tmp_path: Path,
) -> None:
    with proxy_in_front_of_demo(tmp_path) as proxy:
        url, config, output = proxy.url, proxy.config, proxy.output
        output.wait_for("Policies: 2 rules loaded (default: allow)")
        output.wait_for("Annotation cache primed: 8 tool definitions baselined")  # the demo server's tools
        output.wait_for(f"Watching {config} for policy changes")
        assert blocked_by(call(url, "get_weather", {"city": "Leeds"})) is None
        assert blocked_by(call(url, "delete_user", {"user_id": "u1"})) == "block-destructive"

        config.write_text(config.read_text().replace("  rules:\n", "  rules:\n" + NO_WEATHER, 1))
        edited = time.monotonic()
        while blocked_by(call(url, "get_weather", {"city": "Leeds"})) != "no-weather":
            assert time.monotonic() - edited < 5, "the new rule never took effect"
        assert time.monotonic() - edited < 1.0
        output.wait_for("Policy reloaded: 3 rules (default: allow)")

        config.write_text(config.read_text() + "  rules: [unclosed\n")
        line = output.wait_for("Config reload failed (keeping current configuration)")
        assert str(config) in line
        assert blocked_by(call(url, "get_weather", {"city": "Leeds"})) == "no-weather"
        assert blocked_by(call(url, "delete_user", {"user_id": "u1"})) == "block-destructive"
        assert proxy.process.poll() is None
    with sqlite3.connect(tmp_path / "audit.db") as db:
        reloads = db.execute(
            "SELECT policy_decision, json_extract(metadata, '$.outcome') FROM audit_records"
            " WHERE record_kind = 'policy_reload' ORDER BY seq"
        ).fetchall()
    assert [row[1] for row in reloads] == ["applied", "rejected"]


def test_no_hot_reload_leaves_the_startup_rules_in_place(tmp_path: Path) -> None:
    with proxy_in_front_of_demo(tmp_path, "--no-hot-reload") as proxy:
        assert not proxy.output.seen("Watching")
        proxy.config.write_text(proxy.config.read_text().replace("  rules:\n", "  rules:\n" + NO_WEATHER, 1))
        # Nothing watches the file, so there is no event to wait for. A watched file reloads in
        # well under a second (test above); for 1.5 s the old rules must keep answering.
        edited = time.monotonic()
        while time.monotonic() - edited < 1.5:
            assert blocked_by(call(proxy.url, "get_weather", {"city": "Leeds"})) is None
        assert not proxy.output.seen("Policy reloaded")
