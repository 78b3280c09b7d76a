"""Hostile upstreams against a real ``helio start`` (issue 16 point 5): an upstream that answers a
gigabyte, streams forever, floods notifications, sends garbage or the wrong id, or a huge
``tools/list``. The agent gets ``-32603`` with a ``failure_class`` within ``request_timeout``, the
audit holds the failure, other sessions are served meanwhile and the proxy's memory stays bounded.

The hostile server is :mod:`tests.e2e.hostile_upstream`, a real process (streamable HTTP and stdio).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.e2e.conftest import free_port, helio, running, wait_for_port
from tests.harness import audit_records

pytestmark = pytest.mark.e2e

HEADERS: Final = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
REQUEST_TIMEOUT: Final = 2.0
MAX_RESPONSE_BYTES: Final = 4 << 20
PROXY_SLACK: Final = 1.5
"""How much later than ``request_timeout`` the proxy may answer (its own record's duration)."""
CLIENT_SLACK: Final = 20.0
"""How much later the agent may see it: on a shared, overloaded 2-core machine the agent's own
reading of a flood can take that long; the proxy's timing is checked on its records."""
ROOT: Final = Path(__file__).resolve().parents[2]
RSS_CEILING_MIB: Final = 96
"""How much the proxy's resident memory may grow while the upstream offers it a gigabyte."""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@contextmanager
def rss_peak(pid: int) -> Generator[list[float]]:
    """Samples ``pid``'s RSS every 20 ms while the block runs; yields ``[peak]``."""
    peak = [rss_mib(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            try:
                peak[0] = max(peak[0], rss_mib(pid))
            except (OSError, AssertionError):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join(2)


@contextmanager
def hostile_http(port: int, log: Path) -> Generator[None]:
    """The hostile server on ``port`` (its output goes to ``log``, not a pipe nobody drains)."""
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.hostile_upstream", "--port", str(port)],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, server)  # pyright: ignore[reportArgumentType]
            yield
        finally:
            server.terminate()
            server.wait(timeout=10)


def config(tmp_path: Path, port: int, upstream: str) -> Path:
    path = tmp_path / "helio.yaml"
    path.write_text(
        "version: '1'\n"
        f"upstream:\n{upstream}"
        f"  request_timeout: {REQUEST_TIMEOUT:g}s\n"
        f"  max_response_bytes: {MAX_RESPONSE_BYTES}\n"
        f"listen:\n  port: {port}\n"
        f"audit:\n  path: '{tmp_path / 'audit.db'}'\n"
        "dashboard:\n  enabled: false\n"
    )
    return path


def reply_to(response: httpx.Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC message answering ``request_id`` in a JSON or SSE reply."""
    assert response.status_code == 200, response.text[:500]
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: "):
                message = json.loads(line[6:])
                if message.get("id") == request_id:
                    return message
        raise AssertionError(f"no answer to {request_id} in {len(response.text)} bytes of stream")
    return response.json()


class Agent:
    """A raw streamable-HTTP agent: one MCP session per instance."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.headers = dict(HEADERS)
        self.ids = iter(range(1, 1_000_000))

    async def open(self) -> None:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "hostile-e2e", "version": "1"},
            },
        }
        response = await self.http.post(self.url, json=init, headers=self.headers)
        assert "result" in reply_to(response, 0)
        if session := response.headers.get("mcp-session-id"):
            self.headers["mcp-session-id"] = session
        done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await self.http.post(self.url, json=done, headers=self.headers)).status_code == 202

    async def request(self, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """The answer and how long it took (seconds)."""
        request_id = next(self.ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        started = time.monotonic()
        response = await self.http.post(self.url, json=body, headers=self.headers)
        return reply_to(response, request_id), time.monotonic() - started

    async def call(self, tool: str) -> tuple[dict[str, Any], float]:
        return await self.request("tools/call", {"name": tool, "arguments": {"tool": tool}})


async def hostile_round(url: str, pid: int) -> tuple[dict[str, tuple[dict[str, Any], float]], float]:
    """The hostile tools, each from its own session, while another session calls ``echo``: first
    all but ``flood`` at once, then ``flood`` alone (it takes all the CPU it can get, on both
    sides). Returns the answers with their durations (``echo``: the slowest), and the proxy's peak
    RSS growth (MiB)."""
    waves = [["gigabytes", "endless", "garbage", "wrong_id"], ["flood"]]
    answers: dict[str, tuple[dict[str, Any], float]] = {}
    served: list[tuple[dict[str, Any], float]] = []
    async with httpx.AsyncClient(timeout=30) as http:
        hostile = {name: Agent(http, url) for wave in waves for name in wave}
        bystander = Agent(http, url)
        await asyncio.gather(bystander.open(), *(agent.open() for agent in hostile.values()))
        await bystander.call("echo")  # warm: the RSS baseline includes a served call
        baseline = rss_mib(pid)
        with rss_peak(pid) as peak:
            for wave in waves:
                calls = [asyncio.create_task(hostile[name].call(name)) for name in wave]
                during = len(served)
                while not all(c.done() for c in calls):
                    served.append(await bystander.call("echo"))
                assert len(served) - during >= 1, f"the bystander was not served during {wave}"
                answers.update(zip(wave, [await c for c in calls], strict=True))
        answers["echo"] = max(served, key=lambda answered: answered[1])
        return answers, peak[0] - baseline


def failure(answer: tuple[dict[str, Any], float]) -> dict[str, Any]:
    message, took = answer
    assert took < REQUEST_TIMEOUT + CLIENT_SLACK, f"answered after {took:.2f}s"
    assert message["error"]["code"] == -32603, message
    return message["error"]["data"]


def assert_audited(db: Path, expected: dict[str, str | set[str]]) -> None:
    """Each hostile call has its record: failed, with the failure class, decided in time."""
    records = {tool: audit_records(db, tool=tool, record_kind="tool_call")[0] for tool in [*expected, "echo"]}
    for tool, failure_class in expected.items():
        assert records[tool]["success"] is False
        assert records[tool]["total_duration_ms"] < (REQUEST_TIMEOUT + PROXY_SLACK) * 1000, (
            tool,
            {
                k: v
                for k, v in records[tool].items()
                if k
                in (
                    "upstream_error",
                    "upstream_latency_ms",
                    "proxy_compute_ms",
                    "total_duration_ms",
                    "metadata",
                )
            },
        )
        classes = {failure_class} if isinstance(failure_class, str) else failure_class
        assert records[tool]["upstream_error"]["failure_class"] in classes, records[tool]
    assert records["echo"]["success"] is True


def stop(process: Any) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


async def test_hostile_http_upstream_gets_the_agent_a_failure_class_in_time_with_memory_bounded(
    tmp_path: Path,
) -> None:
    proxy, upstream = free_port(), free_port()
    path = config(tmp_path, proxy, f"  url: 'http://127.0.0.1:{upstream}/mcp'\n")
    with (
        hostile_http(upstream, tmp_path / "upstream.log"),
        running(helio("start", "-c", str(path)), cwd=tmp_path) as process,
    ):
        wait_for_port(proxy, process)
        url = f"http://127.0.0.1:{proxy}/mcp"
        answers, grew = await hostile_round(url, process.pid)

        async with httpx.AsyncClient(timeout=30) as http:
            await http.post(f"http://127.0.0.1:{upstream}/control", json={"tools_list": "huge"})
            agent = Agent(http, url)
            await agent.open()
            huge_list = await agent.request("tools/list", {})
        (tmp_path / "proxy.log").write_text(stop(process))

    assert failure(answers["gigabytes"]) == {
        "failure_class": "response_too_large",
        "failure_reason": "max_response_bytes",
        "max_response_bytes": MAX_RESPONSE_BYTES,
    }
    assert failure(answers["endless"]) == {
        "failure_class": "upstream_forward_error",
        "failure_reason": "timeout",
    }
    flood = failure(answers["flood"])
    assert flood["failure_class"] == "response_too_large" or flood["failure_reason"] == "timeout"
    assert failure(answers["garbage"])["failure_class"] == "upstream_invalid_jsonrpc"
    assert failure(answers["wrong_id"])["failure_class"] == "upstream_id_mismatch"
    assert failure(huge_list)["failure_class"] == "response_too_large"
    echo, took = answers["echo"]
    assert echo["result"]["isError"] is False
    assert took < REQUEST_TIMEOUT + CLIENT_SLACK, f"a bystander waited {took:.2f}s"
    assert grew < RSS_CEILING_MIB, f"the proxy's RSS grew {grew:.0f} MiB"
    assert_audited(
        tmp_path / "audit.db",
        {
            "gigabytes": "response_too_large",
            "endless": "upstream_forward_error",
            "garbage": "upstream_invalid_jsonrpc",
            "wrong_id": "upstream_id_mismatch",
            "flood": {"response_too_large", "upstream_forward_error"},
        },
    )


async def test_hostile_stdio_upstream_gets_the_agent_a_failure_class_in_time_with_memory_bounded(
    tmp_path: Path,
) -> None:
    proxy = free_port()
    root = ROOT
    upstream = (
        "  url: 'stdio://hostile'\n  transport: stdio\n"
        f"  command: {json.dumps(sys.executable)}\n"
        f"  args: ['-m', 'tests.e2e.hostile_upstream', '--stdio']\n"
        f"  env: {{PYTHONPATH: {json.dumps(str(root))}}}\n"
    )
    path = config(tmp_path, proxy, upstream)
    with running(helio("start", "-c", str(path)), cwd=tmp_path) as process:
        wait_for_port(proxy, process)
        answers, grew = await hostile_round(f"http://127.0.0.1:{proxy}/mcp", process.pid)
        (tmp_path / "proxy.log").write_text(stop(process))

    big = failure(answers["gigabytes"])
    assert (big["failure_class"], big["failure_reason"]) == ("response_too_large", "max_response_bytes")
    # A stdio server's notifications are the in-flight request's: the endless stream runs into the
    # deadline, the flood into the size cap (or the deadline, on a slow machine).
    assert failure(answers["endless"])["failure_reason"] == "timeout"
    flood = failure(answers["flood"])
    assert flood["failure_class"] == "response_too_large" or flood["failure_reason"] == "timeout"
    # Lines that are not JSON, and responses to no request, are dropped: the request times out.
    assert failure(answers["garbage"])["failure_reason"] == "timeout"
    assert failure(answers["wrong_id"])["failure_reason"] == "timeout"
    echo, took = answers["echo"]
    assert echo["result"]["isError"] is False
    assert took < REQUEST_TIMEOUT + CLIENT_SLACK, f"a bystander waited {took:.2f}s"
    assert grew < RSS_CEILING_MIB, f"the proxy's RSS grew {grew:.0f} MiB"
    assert_audited(
        tmp_path / "audit.db", {"gigabytes": "response_too_large", "endless": "upstream_forward_error"}
    )
