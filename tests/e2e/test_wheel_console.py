"""The wheel ships the console: ``uv build`` a wheel, install it with pip into a fresh virtual
environment, and that installation's ``helio demo`` serves the console, prints a one-time login
link that works once, and has sent the scripted traffic every screen shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port, running, wait_for_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    assert Path(found).is_file() or shutil.which(found), "uv is needed to build the wheel"
    return found


def _read_until(process: subprocess.Popen[str], pattern: str, seen: list[str]) -> re.Match[str]:
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, "helio demo stopped printing:\n" + "".join(seen)
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matched {pattern!r}:\n" + "".join(seen))


@pytest.mark.timeout(400)  # a wheel build and a pip install from the registry
def test_a_wheel_installed_with_pip_serves_the_console_from_helio_demo(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [_uv(), "build", "--package", "helio-proxy", "--wheel", "-o", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    [wheel] = dist.glob("helio_proxy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "helio_proxy/console/static/index.html" in names
    assert any(re.fullmatch(r"helio_proxy/console/static/assets/index-.*\.js", n) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"{wheel}[demo]",
        ],
        check=True,
        capture_output=True,
    )
    ports = {flag: free_port() for flag in ("--port", "--upstream-port", "--dashboard-port", "--sdk-port")}
    args = [str(venv / "bin" / "helio"), "demo", *(str(x) for pair in ports.items() for x in pair)]
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": ""}
    seen: list[str] = []
    with running(args, cwd=tmp_path, env=env) as demo:
        link = _read_until(demo, r"Console: open (http://127\.0\.0\.1:\d+)/\?token=(\S+)", seen)
        base, token = link.group(1), link.group(2)
        assert base == f"http://127.0.0.1:{ports['--dashboard-port']}"
        wait_for_port(ports["--dashboard-port"], demo)
        page = httpx.get(f"{base}/?token={token}")
        assert page.status_code == 200
        assert page.headers["referrer-policy"] == "no-referrer"
        [script] = re.findall(r'src="(/assets/index-[^"]+\.js)"', page.text)
        bundle = httpx.get(base + script)
        assert bundle.status_code == 200
        assert "javascript" in bundle.headers["content-type"]
        assert httpx.get(f"{base}/audit?tool=x").text == page.text  # the app routes in the browser

        with httpx.Client(base_url=base) as browser:
            exchanged = browser.post("/api/auth/token-exchange", json={"token": token})
            assert exchanged.status_code == 200, exchanged.text
            assert exchanged.json()["data"]["role"] == "admin"
            assert browser.get("/api/auth/session").json()["data"]["operator"] == "api_secret"
            again = httpx.post(f"{base}/api/auth/token-exchange", json={"token": token})
            assert again.status_code == 401  # single use

            # The scripted traffic: allowed, denied, dry run, the budget in use, a payment held.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                pending = browser.get("/api/approvals", params={"status": "pending"}).json()["data"]
                if pending:
                    break
                time.sleep(0.2)
            assert [t["tool_name"] for t in pending] == ["create_payment"]
            # The payment's ticket is written at once; the records of the calls before it are
            # batched (committed within 100 ms), so the last of them may land just after.
            scripted = {("get_weather", "allow"), ("delete_user", "deny"), ("send_email", "dry_run")}
            decisions: set[tuple[str, str]] = set()
            recorded_by = time.monotonic() + 10
            while time.monotonic() < recorded_by:
                calls = browser.get("/api/audit", params={"kind": "tool_call", "limit": 50}).json()["data"]
                decisions = {(c["tool_name"], c["policy_decision"]) for c in calls}
                if scripted <= decisions:
                    break
                time.sleep(0.1)
            assert ("get_weather", "allow") in decisions
            assert ("delete_user", "deny") in decisions
            assert ("send_email", "dry_run") in decisions
            [budget] = browser.get("/api/budgets").json()["data"]
            assert budget["name"] == "report-steps"
            assert budget["buckets"][0]["current"] == "8"
            session = browser.get("/api/sessions/helio-demo-traffic").json()["data"]
            assert [c["tool_name"] for c in session["calls"]][:7] == [
                "get_weather",
                "search_docs",
                "lookup_order",
                "build_report",
                "build_report",
                "delete_user",
                "send_email",
            ]
    assert demo.stdout is not None
    demo.stdout.close()
