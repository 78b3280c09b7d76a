"""benchmarks/bench_compare.py's CPU accounting: a process tree's CPU, and its busiest thread's."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_compare", ROOT / "benchmarks" / "bench_compare.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_compare"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_busy_child_is_counted_under_its_parent_and_is_the_busiest_thread() -> None:
    bench = _bench()
    # A parent that sleeps, with a child that spins for about 0.4 s of CPU.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.run([sys.executable, '-c', "
            "'import time\\nend = time.process_time() + 0.4\\nwhile time.process_time() < end: pass\\n"
            "time.sleep(30)'])",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while len(bench.process_tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        tree = bench.process_tree(parent.pid)
        assert tree[0] == parent.pid
        assert len(tree) == 2
        before = bench.CpuSample.of([parent.pid])
        started = time.perf_counter()
        time.sleep(1.5)  # the child spins, then sleeps
        after = bench.CpuSample.of([parent.pid])
        seconds = time.perf_counter() - started
        total, busiest, share = bench.cpu_per_call(before, after, 100, seconds)
    finally:
        for pid in reversed(bench.process_tree(parent.pid)):
            os.kill(pid, 9)
        parent.wait()
    # Most of the child's 0.4 s fell between the samples (it was still starting at the first):
    # per call of 100, up to 4,000 µs, nearly all of it on one thread, a quarter of a core at most.
    assert 1_000 < total <= 4_200, total
    # The kernel turns the process's times and each thread's into clock ticks separately (utime and
    # stime each rounded down), so the busiest thread can read up to two ticks (2 x 10 ms over 100
    # calls) above the whole process: it once read 4,000 µs against 3,900.
    assert busiest <= total + 200, (busiest, total)
    assert busiest > 0.9 * total - 200, (busiest, total)
    assert 0.05 < share < 0.3, share
    assert bench.cpu_per_call(before, after, 0, seconds) == (0.0, 0.0, 0.0)
