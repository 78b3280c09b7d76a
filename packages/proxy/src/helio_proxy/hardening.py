"""Process hardening: a stdio upstream must not read the proxy's secrets out of ``/proc``.

A stdio child runs as the proxy's user. On Linux a process may read ``/proc/PID/environ`` (the
environment a process was started with, secrets included) and ``/proc/PID/mem`` of any process
of the same user that is *dumpable*, so withholding variables from the child's own environment
would not be enough: it could read them from its parent. :func:`forbid_inspection` makes the
proxy non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``): its ``/proc`` entries then belong to root
and only a process holding ``CAP_SYS_PTRACE`` may read them. The flag is not inherited across
``exec``, so children are unaffected. Side effects: no core dumps, and debuggers or profilers
running as the same user (gdb, py-spy) cannot attach to the proxy.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Final

PR_SET_DUMPABLE: Final = 4
PR_GET_DUMPABLE: Final = 3


def _prctl(option: int, value: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    result: int = prctl(option, value, 0, 0, 0)
    return result


def forbid_inspection() -> bool:
    """Make this process non-dumpable (Linux); whether it now is. Elsewhere: ``False``."""
    if not sys.platform.startswith("linux"):
        return False
    _prctl(PR_SET_DUMPABLE, 0)
    return _prctl(PR_GET_DUMPABLE, 0) == 0
