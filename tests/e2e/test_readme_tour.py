"""The README's tour as a new user follows it: the commands are read from README.md and the
secrets and URLs from what ``./dev demo`` prints, then run as real processes.

``./dev demo`` and ``./dev helio`` are the repository's own script (it finds or installs uv and
syncs the environment, which is a no-op here); the demo runs on free ports, chosen with the
options the README names, in a temporary directory, so its audit trail lands there.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import helio
from tests.e2e.conftest import free_port, running, wait_for_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DEV_TIMEOUT = 180.0
"""First use of ./dev may sync the environment; afterwards it takes about a second."""


def tour_step(number: int) -> str:
    """The text of step ``number`` of "A five-minute tour"."""
    tour = README[README.index("## A five-minute tour") :]
    tour = tour[: tour.index("\n## ", 1)]
    start = re.search(rf"^{number}\. ", tour, re.M)
    assert start is not None, f"the README's tour has no step {number}"
    end = re.search(rf"^{number + 1}\. ", tour, re.M)
    return tour[start.start() : end.start() if end else len(tour)]


def shell_block(step: str) -> list[str]:
    """The lines of the step's ``sh`` block, de-indented."""
    match = re.search(r"```sh\n(.*?)```", step, re.S)
    assert match is not None
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


def exports_in(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*export (\w+)=(\S+)\s*$", text, re.M))


def dev_command(command: str) -> list[str]:
    """A README command that starts with ./dev, as arguments, with the script's absolute path."""
    words = shlex.split(command, comments=True)
    assert words[0] == "./dev", command
    return [str(ROOT / "dev"), *words[1:]]


def read_until(process: subprocess.Popen[str], marker: str, seen: list[str]) -> None:
    assert process.stdout is not None
    while not any(marker in line for line in seen):
        line = process.stdout.readline()
        assert line, "the demo stopped printing before " + marker + ":\n" + "".join(seen)
        seen.append(line)


@contextmanager
def readme_demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str], dict[str, int]]]:
    (start,) = re.findall(r"Start the demo: `(\./dev demo)`", README)
    ports = {"--port": free_port(), "--upstream-port": free_port(), "--dashboard-port": free_port()}
    ports["--sdk-port"] = free_port()
    for option in ports:
        assert f"`{option}`" in tour_step(1), f"the README does not name {option}"
    args = [arg for option, port in ports.items() for arg in (option, str(port))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIO_")}
    seen: list[str] = []
    with running([*dev_command(start), *args], cwd=tmp_path, env=env) as demo:
        wait_for_port(ports["--port"], demo, timeout=DEV_TIMEOUT)
        wait_for_port(ports["--sdk-port"], demo, timeout=DEV_TIMEOUT)
        read_until(demo, "Press Ctrl+C to stop.", seen)
        try:
            yield demo, seen, ports
        finally:
            if demo.returncode is None:  # Ctrl+C, as the demo says; communicate() closes the pipe
                demo.send_signal(signal.SIGINT)
                demo.communicate(timeout=30)


def as_pattern(expected: str) -> re.Pattern[str]:
    """A README output line as a pattern: ``...`` and ``{...}`` stand for anything."""
    return re.compile(re.escape(expected).replace(r"\{\.\.\.\}", ".*").replace(r"\.\.\.", ".*"))


def test_a_new_user_goes_from_dev_demo_to_an_sdk_agent_that_is_blocked_then_allowed(tmp_path: Path) -> None:
    step = tour_step(8)
    lines = shell_block(step)
    exported_names = [
        re.match(r"export (\w+)=", line).group(1) for line in lines if line.startswith("export ")
    ]  # type: ignore[union-attr]
    commands = [line for line in lines if not line.startswith(("export ", "#"))]
    expected = [line.removeprefix("# ") for line in lines if line.startswith("# ")]
    assert exported_names == ["HELIO_SDK_URL", "HELIO_SDK_TOKEN", "HELIO_MCP_URL"]
    assert len(commands) == 1

    with readme_demo(tmp_path) as (demo, seen, ports):
        printed = exports_in("".join(seen))
        assert list(printed) == exported_names  # the demo prints exactly the lines the README pastes
        assert printed["HELIO_SDK_URL"] == f"http://127.0.0.1:{ports['--sdk-port']}"
        assert printed["HELIO_MCP_URL"] == f"http://127.0.0.1:{ports['--port']}/mcp"
        base = {k: v for k, v in os.environ.items() if not k.startswith("HELIO_")}
        agent = subprocess.run(
            shlex.split(commands[0]),
            cwd=ROOT,  # "from the repository root"
            env={**base, **printed},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert agent.returncode == 0, agent.stdout + agent.stderr
    said = agent.stdout.splitlines()
    position = 0
    for line in expected:
        pattern = as_pattern(line)
        while position < len(said) and not pattern.fullmatch(said[position]):
            position += 1
        assert position < len(said), f"the agent never printed {line!r} (in order):\n{agent.stdout}"
    session_id = said[0].split()[1].rstrip(":")
    with sqlite3.connect(tmp_path / "helio-demo-audit.db") as db:
        rows = list(
            db.execute(
                "SELECT tool_name, policy_decision, block_reason, matched_rule FROM audit_records "
                "WHERE session_id = ? ORDER BY seq",
                (session_id,),
            )
        )
    assert rows == [
        ("refund_order", "deny", "evidence_missing", "refund-needs-order-data"),
        ("lookup_order", "allow", None, "allow-reads"),
        ("refund_order", "allow", None, "refund-needs-order-data"),
    ]
    assert demo.returncode == 0


def test_the_sdk_given_the_demos_mcp_url_instead_of_its_sideband_says_so_naming_the_url(
    tmp_path: Path,
) -> None:
    with readme_demo(tmp_path) as (_, seen, ports):
        printed = exports_in("".join(seen))
        errors: list[helio.HelioNotSidebandError] = []
        for wrong in (f"http://127.0.0.1:{ports['--port']}", printed["HELIO_MCP_URL"]):
            with helio.HelioContext(wrong, token=printed["HELIO_SDK_TOKEN"]) as ctx:
                with pytest.raises(helio.HelioNotSidebandError) as caught:
                    ctx.mark_evidence("lookup_order", "order_data", {"order_id": "A-1001"})
                errors.append(caught.value)
        with helio.HelioContext(printed["HELIO_SDK_URL"], token=printed["HELIO_SDK_TOKEN"]) as ctx:
            receipt = ctx.mark_evidence("lookup_order", "order_data", {"order_id": "A-1001"})
    for error, wrong in zip(
        errors, (f"http://127.0.0.1:{ports['--port']}", printed["HELIO_MCP_URL"]), strict=True
    ):
        assert error.url == wrong
        assert f"the server at {wrong} does not look like Helio's sideband" in str(error)
        assert printed["HELIO_SDK_TOKEN"] not in str(error)
    assert receipt.evidence_key == "order_data"


def test_the_tours_own_config_commands_run_with_dev_helio_where_they_are_called(tmp_path: Path) -> None:
    lines = shell_block(tour_step(9))
    assert all(line.startswith("./dev helio ") for line in lines)
    by_command = {shlex.split(line, comments=True)[2]: line for line in lines}
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIO_")}

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            dev_command(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=DEV_TIMEOUT
        )

    init = run(by_command["init"])
    validate = run(by_command["validate"])
    policy = run(by_command["policy"])
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "helio.yaml").is_file()  # in the caller's directory, not the repository's
    assert validate.returncode == 0, validate.stderr
    claimed = by_command["validate"].split("# ", 1)[1]
    assert validate.stdout.strip() == claimed
    assert "Warning" not in validate.stderr
    assert policy.returncode == 0, policy.stderr
    assert "Decision: deny (policy_denied)" in policy.stdout
    assert "Matched rule: block-destructive (index 0)" in policy.stdout
