"""benchmarks/bench_inprocess.py, run as a user would, with few calls: every row answered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_the_in_process_benchmark_drives_both_apps_and_every_audit_part_without_errors() -> None:
    """Spaced calls (``--gap-ms``) too: every row has a time to reply."""
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_inprocess.py",
            "--calls",
            "300",
            "--rounds",
            "1",
            "--concurrency",
            "8",
            "--audit-parts",
            "--gap-ms",
            "0.2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| target")
    }
    assert list(rows) == ["bare ASGI forwarder", "Helio", "Helio, no record", "Helio, row, no writer"]
    for label, cells in rows.items():
        process_us, loop_us, _, calls_s, reply_us, errors = cells
        assert errors == "0", (label, done.stdout)
        assert float(loop_us) > 0, (label, cells)
        assert float(process_us) >= float(loop_us) * 0.9, (label, cells)  # the process holds the loop
        assert float(calls_s) > 0, (label, cells)
        assert 0 < float(reply_us) < 1e6, (label, cells)  # a time to reply, in µs
    assert rows["bare ASGI forwarder"][2] == "1.00"
