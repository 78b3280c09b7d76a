"""The fuzz suite's report: inputs tried per surface, and the peak RSS, at the end of the run.

Under pytest-xdist (the default ``tests`` session) each worker counts its own inputs: a worker
hands its tally to the controller when it finishes, and the controller prints the sum."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fuzz.support import PEAK_RSS, TALLY


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: send the counts to the controller
        workeroutput["fuzz_tally"] = dict(TALLY)
        workeroutput["fuzz_peak_rss"] = dict(PEAK_RSS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", None) or {}
    TALLY.update(output.get("fuzz_tally", {}))
    for surface, rss in output.get("fuzz_peak_rss", {}).items():
        PEAK_RSS[surface] = max(PEAK_RSS.get(surface, 0), rss)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY:
        return
    terminalreporter.section("fuzz: inputs tried per surface")
    for surface, count in sorted(TALLY.items()):
        terminalreporter.write_line(f"fuzz: {count:>9,} inputs  {surface}")
    if PEAK_RSS:
        peak = max(PEAK_RSS.values())
        terminalreporter.write_line(
            f"fuzz: peak RSS of a test process (proxy in-process): {peak / 2**20:.0f} MiB"
        )
