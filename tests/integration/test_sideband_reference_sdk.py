"""The reference Python SDK, ``helio-client`` 0.16.0 from PyPI, works unchanged against our sideband.

It is installed into a throwaway venv (``uv venv`` + ``uv pip install``; needs PyPI) and drives a
real proxy on a free port from a separate process. Set ``HELIO_OFFLINE=1`` to skip without PyPI.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helio_proxy.app import HelioApp
from helio_proxy.config import LoadedConfig, parse_config_text

REFERENCE_SDK = "helio-client==0.16.0"
CONFIG = """
version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
listen: {port: 0}
dashboard: {enabled: false}
sdk: {enabled: true, port: 0}
policies:
  rules:
    - match: {tool: orders.refund}
      evidence: {requires: [order_data]}
"""
SCRIPT = """
import json, sys
import helio
from helio import HelioContext, HelioError

out = {"version": helio.__version__}
with HelioContext(proxy_url=sys.argv[1], session_id="ref-run-1") as ctx:
    ctx.mark_evidence("orders.lookup", "order_data", {"order_id": 7}, ttl=120)
    ctx.set("tier", "gold")
    ctx.require_evidence(["order_data", "refund_policy"])
    report = ctx.get_evidence_state()
    entry = report.evidence["order_data"]
    out["evidence"] = {"data": entry.data, "tool_name": entry.tool_name,
                       "ttl_ms": entry.expires_at - int(entry.timestamp)}
    out["context"] = report.context
    out["completed"] = [[c.tool_name, c.succeeded] for c in report.completed_tools]
    out["satisfied"], out["missing"] = report.satisfied, report.missing
    try:
        ctx.mark_evidence("orders.lookup", "not_allowed", 1)
    except HelioError as error:
        out["refused"] = [error.status_code, "code=evidence_key_not_in_policy_allowlist" in str(error)]
print(json.dumps(out))
"""


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.fail("uv is needed to build the reference SDK's venv (it runs this project)")
    return found


@pytest.fixture(scope="module")
def reference_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding only helio-client 0.16.0 (and its dependency httpx)."""
    if os.environ.get("HELIO_OFFLINE") == "1":
        pytest.skip("HELIO_OFFLINE=1: PyPI is not reachable")
    venv = tmp_path_factory.mktemp("helio-client") / "venv"
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), REFERENCE_SDK],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, f"installing {REFERENCE_SDK} failed:\n{installed.stderr}"
    return python


async def _run(python: Path, url: str, token: str) -> dict[str, Any]:
    env = {"PATH": os.environ.get("PATH", ""), "HELIO_SDK_TOKEN": token}
    process = await asyncio.create_subprocess_exec(
        str(python),
        "-c",
        SCRIPT,
        url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout)


async def test_reference_sdk_marks_evidence_and_reads_the_state_back(reference_python: Path) -> None:
    config = parse_config_text(CONFIG, source="test.yaml")
    loaded = LoadedConfig(config=config, path=Path("test.yaml"), sha256="0" * 64, warnings=[])
    app = HelioApp(loaded, out=io.StringIO(), environ={"HELIO_SDK_TOKEN": "reference-token"})
    await app.start()
    try:
        # A call the proxy forwarded earlier in the session: its entry carries our call_id field.
        await app.sessions.record_call("ref-run-1", "orders.lookup", "c1", succeeded=True)
        result = await _run(reference_python, app.sideband_url, "reference-token")
        state = await app.sessions.snapshot("ref-run-1")
    finally:
        await app.stop()
    assert result["version"] == "0.16.0"
    assert result["evidence"] == {"data": {"order_id": 7}, "tool_name": "orders.lookup", "ttl_ms": 120_000}
    assert result["context"] == {"tier": "gold"}
    assert result["completed"] == [["orders.lookup", True]]
    assert result["satisfied"] == ["order_data"]
    assert result["missing"] == ["refund_policy"]
    assert result["refused"] == [400, True]
    assert state.evidence["order_data"].data == {"order_id": 7}
