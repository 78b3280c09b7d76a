"""Terminal operations that need no running proxy: ``audit tail``, completion, progress bars,
and the errors that name their fix. (Against a real ``helio start``: tests/e2e/test_terminal_ops_e2e.py.)"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from helio_proxy.cli import cli
from tests.unit.audit.test_audit_cli import _config, _seed


def test_audit_tail_prints_the_last_matching_records_oldest_first(tmp_path: Path) -> None:
    ids = _seed(tmp_path, 9)
    config = str(_config(tmp_path))
    last = CliRunner().invoke(cli, ["audit", "tail", "-c", config, "-n", "2"])
    denied = CliRunner().invoke(cli, ["audit", "tail", "-c", config, "--decision", "deny", "--json"])
    assert last.exit_code == 0, last.output
    assert [line.split()[1] for line in last.stdout.splitlines()] == ["#8", "#9"]
    assert last.stdout.splitlines()[1].split()[2:5] == ["get_weather", "allow", "session=s0"]
    assert denied.exit_code == 0, denied.output
    assert [line.count('"policy_decision":"deny"') for line in denied.stdout.splitlines()] == [1, 1, 1]
    assert [ids[0] in denied.stdout, ids[1] in denied.stdout] == [True, False]


def test_audit_tail_without_a_store_says_how_to_get_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["audit", "tail", "-c", str(_config(tmp_path))])
    assert result.exit_code == 3  # a store that cannot be opened is a startup failure
    assert "has the proxy run with this config?" in result.stderr


def test_approvals_without_the_secret_in_the_environment_name_the_variable(tmp_path: Path) -> None:
    config = tmp_path / "helio.yaml"
    config.write_text(
        "version: '1'\nupstream: {url: 'http://127.0.0.1:9/mcp'}\ndashboard: {api_secret: '"
        + "s" * 32
        + "'}\n"
    )
    runner = CliRunner(env={"HELIO_API_SECRET": None})
    result = runner.invoke(cli, ["approvals", "list", "-c", str(config)])
    assert result.exit_code == 1
    assert "HELIO_API_SECRET is not set: export HELIO_API_SECRET=" in result.stderr


def test_approvals_on_a_config_without_a_dashboard_say_how_to_reach_one(tmp_path: Path) -> None:
    result = CliRunner(env={"HELIO_API_SECRET": "x"}).invoke(
        cli, ["approvals", "list", "-c", str(_config(tmp_path))]
    )
    assert result.exit_code == 1
    assert "dashboard.enabled: false" in result.stderr
    assert "--url" in result.stderr


def test_approvals_with_no_proxy_listening_say_to_start_one(tmp_path: Path) -> None:
    result = CliRunner(env={"HELIO_API_SECRET": "x"}).invoke(
        cli, ["approvals", "approve", "t-1", "-c", str(_config(tmp_path)), "--url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 1
    assert "nothing answers at http://127.0.0.1:9: is the proxy running (helio start" in result.stderr


def test_shell_completion_uses_clicks_own_mechanism() -> None:
    script = CliRunner().invoke(cli, ["completion", "bash"])
    assert script.exit_code == 0
    assert "_HELIO_COMPLETE=bash_complete" in script.stdout
    env = {
        **os.environ,
        "_HELIO_COMPLETE": "bash_complete",
        "COMP_WORDS": "helio approvals ",
        "COMP_CWORD": "2",
    }
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "helio")],  # the console script, as a shell runs it
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    words = {line.split(",", 1)[1] for line in completed.stdout.splitlines()}
    assert words == {"approve", "break-glass", "deny", "list"}


def _on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run ``helio ARGS`` with stderr on a pseudo-terminal; (exit code, stdout, what the terminal showed)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "helio_proxy", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes when the process exits (EIO)
            break
        if not chunk:
            break
        shown += chunk
    out, _ = process.communicate(timeout=60)
    os.close(leader)
    return process.returncode, out, shown.decode(errors="replace")


def test_long_verifications_and_exports_show_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    _seed(tmp_path, 2500)
    config = str(_config(tmp_path))
    code, out, terminal = _on_a_terminal(["audit", "verify", "-c", config], tmp_path)
    assert code == 0
    assert "Audit chain OK: 2500 records verified" in out
    assert "Verifying" in terminal
    assert "2500/2500" in terminal
    code, out, terminal = _on_a_terminal(["export", "-c", config, "--limit", "2500", "-o", "x.csv"], tmp_path)
    assert code == 0
    assert "Exporting" in terminal
    assert "Wrote 2500 records" in terminal

    piped = subprocess.run(
        [sys.executable, "-m", "helio_proxy", "audit", "verify", "-c", config],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0
    assert piped.stderr == ""


def test_following_moves_past_filtered_records_and_misses_none_written_later(tmp_path: Path) -> None:
    from helio_proxy.audit.query import AuditFilter
    from helio_proxy.cli.operations import _newer  # pyright: ignore[reportPrivateUsage]
    from helio_proxy.store import create_store

    denials = AuditFilter(decision="deny")

    def poll(seen: int) -> tuple[int, list[int]]:
        store = create_store(f"sqlite:///{tmp_path / 'audit.db'}")
        store.open_sync()
        try:
            cursor, rows = store.read_sync(lambda conn: _newer(conn, denials, seen))
        finally:
            store.close_sync()
        return cursor, [r["seq"] for r in rows]

    _seed(tmp_path, 6)  # denials are records 1 and 4
    cursor, first = poll(1)
    quiet = poll(cursor)
    _seed(tmp_path, 1)  # one more denial: record 7
    assert (cursor, first) == (6, [4])
    assert quiet == (6, [])
    assert poll(cursor) == (7, [7])
