"""examples/agents/ as its README runs them: the refund example's server, ``helio start`` on a copy
of examples/refund/helio.yaml, and each framework's agent script, all real processes.

Each agent is blocked first (``evidence_missing``, read through ``helio.blocked``), looks the order
up, marks verified evidence and is allowed; the audit trail holds those calls under the session
of the agent's ``HelioContext``, although no agent sets a header itself (``helio.instrument()``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.test_refund_example import TOKEN, Stack, example_stack, refund_audit
from tests.peers.tooling import ensure_langgraph

pytestmark = pytest.mark.e2e

AGENTS = Path(__file__).resolve().parents[2] / "examples" / "agents"
SDK_SOURCE = Path(__file__).resolve().parents[2] / "packages" / "sdk" / "src"
AGENT_TIMEOUT = 120


def run_agent(stack: Stack, script: str, session_id: str, order_id: str) -> subprocess.CompletedProcess[str]:
    assert stack.sideband_url is not None
    env = {k: v for k, v in os.environ.items() if k not in ("HELIO_SDK_TOKEN", "HELIO_MCP_URL")}
    env["HELIO_SDK_TOKEN"] = TOKEN
    python = sys.executable
    if script == "langgraph_agent.py":
        # langchain-mcp-adapters needs the MCP SDK 1.x: its own venv, with this checkout's SDK.
        python = str(ensure_langgraph())
        env["PYTHONPATH"] = str(SDK_SOURCE)
    command = [
        python,
        str(AGENTS / script),
        "--proxy-url",
        stack.proxy_url,
        "--sideband-url",
        stack.sideband_url,
        "--session-id",
        session_id,
        "--order-id",
        order_id,
    ]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=AGENT_TIMEOUT, check=False
    )


def events(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """The agent's ``event: text`` lines."""
    lines = [line.partition(": ") for line in result.stdout.splitlines() if ": " in line]
    return [(event, text) for event, _, text in lines if event.isidentifier()]


@pytest.mark.parametrize(
    "script", ["mcp_client_agent.py", "pydantic_ai_agent.py", "openai_agents_agent.py", "langgraph_agent.py"]
)
def test_each_framework_agent_is_blocked_repairs_the_gate_and_refunds_under_its_own_session(
    script: str, tmp_path: Path
) -> None:
    session_id = f"agent-{uuid.uuid4().hex[:8]}"
    with example_stack("helio.yaml", tmp_path) as stack:
        result = run_agent(stack, script, session_id, "A-1001")
        stack.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    steps = events(result)
    assert [event for event, _ in steps] == ["session", "blocked", "called", "marked", "called", "done"]
    assert steps[0] == ("session", session_id)
    assert steps[1] == ("blocked", "evidence_missing missing_evidence=orders.lookup missing_dependencies=")
    assert steps[2][1].startswith("orders.lookup ok ")
    assert steps[3] == ("marked", "orders.lookup verified=True")
    assert steps[4][1].startswith("process_refund ok ")
    assert '"status": "refunded"' in steps[5][1]

    assert refund_audit(stack, session_id) == [
        ("process_refund", "deny", "evidence_missing", "refund-needs-order-lookup", None),
        ("orders.lookup", "allow", None, "reads", 1),
        ("process_refund", "allow", None, "refund-needs-order-lookup", 1),
    ]
