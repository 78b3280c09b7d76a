"""A stdio child of the proxy's user cannot read the proxy's environment out of ``/proc``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import helio_proxy

SRC = Path(helio_proxy.__file__).resolve().parents[1]

READER = """
import os
try:
    with open(f"/proc/{os.getppid()}/environ", "rb") as handle:
        print("readable" if b"PROBE_SECRET=s3cret" in handle.read() else "absent")
except OSError:
    print("unreadable")
"""

PARENT = f"""
import subprocess, sys
from helio_proxy.hardening import forbid_inspection
reader = [sys.executable, "-c", {READER!r}]
before = subprocess.run(reader, capture_output=True, text=True, check=True).stdout.strip()
assert forbid_inspection()
after = subprocess.run(reader, capture_output=True, text=True, check=True).stdout.strip()
print(before, after)
"""


def _as_an_ordinary_user(argv: list[str]) -> list[str]:
    """``argv`` run as ``nobody`` when the tests run as root (root may read any process's /proc
    entries whatever the flag; the protection is for the usual case of an ordinary user)."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to run this test as root"
    # The system interpreter: the test virtualenv may live where nobody can read it.
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/usr/bin/python3", *argv[1:]]


def test_a_same_user_child_reads_the_parents_secrets_from_proc_until_the_parent_forbids_inspection() -> None:
    """Issue 22 point 1: filtering the child's environment alone leaves /proc/PPID/environ open."""
    argv = _as_an_ordinary_user([sys.executable, "-c", PARENT])
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(SRC), "PROBE_SECRET": "s3cret"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["readable", "unreadable"]
