"""The fuzz suite's report: inputs tried per surface, and the peak RSS, at the end of the run."""

from __future__ import annotations

from typing import Any

from tests.fuzz.support import PEAK_RSS, TALLY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY:
        return
    terminalreporter.section("fuzz: inputs tried per surface")
    for surface, count in sorted(TALLY.items()):
        terminalreporter.write_line(f"fuzz: {count:>9,} inputs  {surface}")
    if PEAK_RSS:
        peak = max(PEAK_RSS.values())
        terminalreporter.write_line(
            f"fuzz: peak RSS of the test process (proxy in-process): {peak / 2**20:.0f} MiB"
        )
