"""examples/refund as its README runs it: the example server, ``helio start`` on the example's
config as it is (this test's ports given through the environment variables the config reads, the
audit trail in a temporary working directory), and the agent script, all real processes.

The agent prints one JSON object per step (``--json``); the tests read the steps and then the
audit trail the proxy wrote.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tests.e2e.conftest import free_port, helio, running, wait_for_port

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "refund"
TOKEN = "refund-example-e2e-token"
AGENT_TIMEOUT = 60


@dataclass
class Stack:
    proxy_url: str
    sideband_url: str | None
    audit: Path
    proxy: subprocess.Popen[str]
    output: str = ""

    def agent(self, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "HELIO_SDK_TOKEN"}
        if token is not None:
            env["HELIO_SDK_TOKEN"] = token
        command = [sys.executable, str(EXAMPLE / "agent.py"), "--proxy-url", self.proxy_url, *args]
        if self.sideband_url is not None:
            command += ["--sideband-url", self.sideband_url]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=AGENT_TIMEOUT, check=False
        )

    def stop(self) -> None:
        """SIGTERM the proxy and wait: the audit writer drains before it exits."""
        self.proxy.send_signal(signal.SIGTERM)
        self.output, _ = self.proxy.communicate(timeout=15)
        assert self.proxy.returncode == 0, self.output


def _ports_env(server_port: int, proxy_port: int, sdk_port: int) -> dict[str, str]:
    """What the example's configs read their ports from (``${HELIO_PORT:-3000}`` and so on)."""
    return {
        "REFUND_SERVER_PORT": str(server_port),
        "HELIO_PORT": str(proxy_port),
        "HELIO_SDK_PORT": str(sdk_port),
    }


@contextmanager
def example_stack(name: str, tmp_path: Path) -> Iterator[Stack]:
    server_port, proxy_port, sdk_port = free_port(), free_port(), free_port()
    config = EXAMPLE / name
    sdk = "sdk" in yaml.safe_load(config.read_text())
    ports = _ports_env(server_port, proxy_port, sdk_port)
    with (tmp_path / "server.log").open("w") as server_log:
        server = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "server.py")],  # its port from REFUND_SERVER_PORT
            stdout=server_log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **ports},
        )
        try:
            wait_for_port(server_port, server)
            with running(
                helio("start", "-c", str(config)), cwd=tmp_path, env={"HELIO_SDK_TOKEN": TOKEN, **ports}
            ) as proxy:
                wait_for_port(proxy_port, proxy)
                if sdk:
                    wait_for_port(sdk_port, proxy)
                stack = Stack(
                    proxy_url=f"http://127.0.0.1:{proxy_port}/mcp",
                    sideband_url=f"http://127.0.0.1:{sdk_port}" if sdk else None,
                    audit=tmp_path / "helio-refund-audit.db",
                    proxy=proxy,
                )
                yield stack
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)


def steps_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def refund_audit(stack: Stack, session_id: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(stack.audit) as db:
        return list(
            db.execute(
                "SELECT tool_name, policy_decision, block_reason, matched_rule, success FROM audit_records "
                "WHERE session_id = ? ORDER BY seq",
                (session_id,),
            )
        )


def test_sdk_agent_is_blocked_marks_verified_evidence_and_refunds(tmp_path: Path) -> None:
    with example_stack("helio.yaml", tmp_path) as stack:
        result = stack.agent("--json", "--order-id", "A-1001")
        human = stack.agent("--order-id", "A-1002", "--amount", "20.00")
        wrong_token = stack.agent("--json", "--order-id", "A-1002", token="not-the-token")
        stack.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    steps = steps_of(result)
    session_id = steps[0]["session_id"]
    assert [(s["step"], s.get("tool"), s.get("outcome")) for s in steps] == [
        ("start", None, None),
        ("call", "process_refund", "blocked"),
        ("call", "orders.lookup", "ok"),
        ("mark_evidence", None, None),
        ("call", "process_refund", "ok"),
        ("done", None, None),
    ]
    blocked = steps[1]
    assert blocked["reason"] == "evidence_missing"
    assert blocked["missing_evidence"] == ["orders.lookup"]
    assert blocked["missing_dependencies"] == []
    assert blocked["rule"] == "refund-needs-order-lookup"
    assert blocked["retry_allowed"] is True
    assert blocked["message"] == "Refunds need the order looked up first, in this session."
    assert blocked["suggestion"].startswith("Call orders.lookup with the order id, mark its result")
    assert steps[2]["result"]["customer"] == "alice@example.com"
    marked = steps[3]
    assert (marked["evidence_key"], marked["tool_name"], marked["verified"]) == (
        "orders.lookup",
        "orders.lookup",
        True,
    )
    assert steps[4]["result"]["status"] == "refunded"
    assert steps[4]["result"]["amount"] == "249.00"
    assert steps[5] == {"step": "done", "refunded": True, "exit_code": 0}

    assert refund_audit(stack, session_id) == [
        ("process_refund", "deny", "evidence_missing", "refund-needs-order-lookup", None),
        ("orders.lookup", "allow", None, "reads", 1),
        ("process_refund", "allow", None, "refund-needs-order-lookup", 1),
    ]
    assert "SDK token: taken from HELIO_SDK_TOKEN" in stack.output
    assert TOKEN not in stack.output

    assert human.returncode == 0, human.stdout + human.stderr
    assert (
        "-> process_refund(order_id=A-1002, amount=20.00): BLOCKED by Helio (evidence_missing)"
        in human.stdout
    )
    assert "     missing_evidence: orders.lookup" in human.stdout
    assert "verified" in human.stdout
    assert human.stdout.rstrip().endswith("Refund done.")

    assert wrong_token.returncode == 2
    assert steps_of(wrong_token)[-1]["error"].startswith("HelioAuthError")


def test_requires_only_agent_without_sdk_is_unlocked_by_proxy_observed_calls(tmp_path: Path) -> None:
    with example_stack("helio-requires.yaml", tmp_path) as stack:
        assert stack.sideband_url is None
        result = stack.agent("--json", "--no-sdk", "--mode", "legacy", token=None)
        wrong_customer = stack.agent(
            "--json", "--no-sdk", "--order-id", "A-1002", "--email", "eve@example.com", token=None
        )
        stack.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    steps = steps_of(result)
    assert [(s["step"], s.get("tool"), s.get("outcome")) for s in steps] == [
        ("start", None, None),
        ("call", "process_refund", "blocked"),
        ("call", "orders.lookup", "ok"),
        ("call", "customer.verify", "ok"),
        ("call", "process_refund", "ok"),
        ("done", None, None),
    ]
    blocked = steps[1]
    assert blocked["reason"] == "dependency_missing"
    assert blocked["missing_dependencies"] == ["orders.lookup", "customer.verify"]
    assert blocked["missing_evidence"] == []
    assert steps[3]["arguments"] == {"order_id": "A-1001", "email": "alice@example.com"}
    assert refund_audit(stack, steps[0]["session_id"]) == [
        ("process_refund", "deny", "dependency_missing", "refund-needs-lookup-and-verify", None),
        ("orders.lookup", "allow", None, "reads", 1),
        ("customer.verify", "allow", None, "reads", 1),
        ("process_refund", "allow", None, "refund-needs-lookup-and-verify", 1),
    ]

    # A failed customer.verify (isError: true) is no prerequisite: the agent stops, still blocked.
    assert wrong_customer.returncode == 1
    failed = steps_of(wrong_customer)
    assert [(s["step"], s.get("tool"), s.get("outcome")) for s in failed][1:] == [
        ("call", "process_refund", "blocked"),
        ("call", "orders.lookup", "ok"),
        ("call", "customer.verify", "tool_error"),
        ("done", None, None),
    ]
    assert [row[:3] for row in refund_audit(stack, failed[0]["session_id"])] == [
        ("process_refund", "deny", "dependency_missing"),
        ("orders.lookup", "allow", None),
        ("customer.verify", "allow", None),
    ]


def test_produced_evidence_needs_no_sdk(tmp_path: Path) -> None:
    with example_stack("helio-produces.yaml", tmp_path) as stack:
        result = stack.agent("--json", "--no-sdk", token=None)
        stack.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    steps = steps_of(result)
    assert [(s["step"], s.get("tool"), s.get("outcome")) for s in steps] == [
        ("start", None, None),
        ("call", "process_refund", "blocked"),
        ("call", "orders.lookup", "ok"),
        ("call", "process_refund", "ok"),
        ("done", None, None),
    ]
    assert steps[1]["missing_evidence"] == ["orders.lookup"]
    assert (
        steps[1]["suggestion"]
        == "1. Call orders.lookup; the proxy records its successful result as evidence 'orders.lookup'. 2. Retry process_refund with the same arguments."
    )
    assert [row[:3] for row in refund_audit(stack, steps[0]["session_id"])] == [
        ("process_refund", "deny", "evidence_missing"),
        ("orders.lookup", "allow", None),
        ("process_refund", "allow", None),
    ]


def _numbered(suggestion: str) -> list[str]:
    """The numbered steps of a generated suggestion ("1. ... 2. ...")."""
    return [step.strip() for step in re.split(r"(?:^|\s)\d+\. ", suggestion) if step.strip()]


async def _follow_the_first_block(proxy_url: str, sideband_url: str) -> tuple[dict[str, Any], list[str], Any]:
    """An agent that knows nothing but the block: it does what the suggestion says, in order."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError

    from helio import HelioContext

    refund = {"order_id": "A-1002"}
    async with (
        HelioContext(sideband_url, token=TOKEN) as ctx,
        httpx2.AsyncClient(headers=ctx.headers, timeout=10) as http,
        Client(streamable_http_client(proxy_url, http_client=http)) as mcp,
    ):
        # Earlier work on another order: its lookup must not open this refund's gate.
        other = await mcp.call_tool("orders.lookup", {"order_id": "A-1001"})
        await ctx.amark_evidence(
            "orders.lookup", "orders.lookup", other.structured_content, call_id=ctx.call_id_of(other)
        )
        with pytest.raises(MCPError) as caught:
            await mcp.call_tool("process_refund", refund)
        block: dict[str, Any] = caught.value.data
        steps = _numbered(block["suggestion"])
        result: Any = None
        for step in steps:
            if called := re.match(r"Call (\S+?)(?: with (.+?))? and keep its result", step):
                arguments = {
                    k: ast.literal_eval(v) for k, v in re.findall(r"(\w+)=('[^']*')", called[2] or "")
                }
                result = await mcp.call_tool(called[1], arguments)
            elif marked := re.match(
                r"Mark that result as evidence '([^']+)'.*ctx\.mark_evidence\('([^']+)'", step
            ):
                await ctx.amark_evidence(
                    marked[2], marked[1], result.structured_content, call_id=ctx.call_id_of(result)
                )
            elif re.match(r"Retry process_refund with the same arguments", step):
                result = await mcp.call_tool("process_refund", refund)
            else:
                raise AssertionError(f"a step this agent cannot follow: {step!r}")
        return block, steps, result


def test_an_sdk_agent_following_only_the_first_blocks_feedback_succeeds_on_its_next_try(
    tmp_path: Path,
) -> None:
    config = yaml.safe_load((EXAMPLE / "helio.yaml").read_text())
    del config["policies"]["rules"][0]["feedback"]  # the generated feedback, not the example's own text
    text = (EXAMPLE / "helio.yaml").read_text()
    generated = tmp_path / "helio-generated-feedback.yaml"
    generated.write_text(text[: text.index("      feedback:")] + text[text.index("    - name: reads") :])
    assert yaml.safe_load(generated.read_text()) == config
    with example_stack(str(generated), tmp_path) as stack:
        assert stack.sideband_url is not None
        block, steps, result = asyncio.run(_follow_the_first_block(stack.proxy_url, stack.sideband_url))
        stack.stop()
    assert block["reason"] == "evidence_mismatch"
    assert block["mismatched_evidence"][0]["found"] == "A-1001"
    assert [step.split(" ")[0] for step in steps] == ["Call", "Mark", "Retry"]
    assert "order_id='A-1002'" in steps[0]
    assert result.is_error is False
    assert result.structured_content["order_id"] == "A-1002"
    assert result.structured_content["status"] == "refunded"
