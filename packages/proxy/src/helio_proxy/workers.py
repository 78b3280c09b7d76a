"""``helio start --workers N``: N proxy processes serving one MCP port, sharing one store.

The supervisor (the process ``helio start`` runs) reserves the MCP port (bound with
``SO_REUSEPORT`` but never listening, so it takes no connections and ``port: 0`` resolves once),
then starts N workers: each is a whole proxy (``python -m helio_proxy start``) that binds the same
port with ``SO_REUSEPORT``, so the kernel spreads new connections across them. Every worker opens
the same store, where what must agree lives: limits and budgets (taken under the bucket's row
lock: ``BEGIN IMMEDIATE`` on SQLite, a row lock on PostgreSQL), approval tickets, tool baselines
and the audit chain (its head advances in the writing transaction). Worker 0 also serves the
dashboard and the SDK sideband ports; the others serve only MCP.

Session state (evidence, completed calls, declared dependencies: what ``evidence`` and
``requires`` gates read) is in the store too: ``store.session_state: auto`` puts it there on
several workers. What stays per worker, in process memory: connections and their streams (a
streamable-HTTP GET stream, a legacy SSE session), the live event feed, and a stdio upstream's
child process. So ``--workers`` above 1 refuses configs whose meaning would depend on a session's
calls reaching one process: a stdio upstream, and ``evidence`` or ``requires`` gates when
``store.session_state: memory`` keeps session state per process.

The supervisor forwards SIGINT/SIGTERM to every worker and exits when they have; if one worker
exits on its own, it stops the others and exits with that worker's status.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Final

from prometheus_client import multiprocess

from helio_proxy.config import HelioConfig
from helio_proxy.errors import StartupError

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""Where prometheus-client's multiprocess mode keeps each worker's metric files."""

mark_process_dead: Callable[[int, str], None] = multiprocess.mark_process_dead  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
"""Drop an exited worker's ``livesum`` gauge values (its open streams) from the sum."""

WORKER_ENV: Final = "HELIO_WORKER"
"""Set in a worker's environment: ``INDEX:PORT`` (the supervisor's reserved MCP port)."""

WORKERS_ENV: Final = "HELIO_WORKERS"
"""Set in a worker's environment: how many workers the supervisor runs (``N`` of ``--workers N``)."""

STOP_GRACE_SECONDS: Final = 15.0


def worker_slot(environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    """``(index, port)`` when this process is a worker started by :func:`supervise`."""
    raw = (os.environ if environ is None else environ).get(WORKER_ENV)
    if not raw:
        return None
    index, _, port = raw.partition(":")
    return int(index), int(port)


def worker_count(environ: dict[str, str] | None = None) -> int:
    """How many proxy processes this one's ``helio start`` runs (1 unless it is a worker)."""
    raw = (os.environ if environ is None else environ).get(WORKERS_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def refusals(config: HelioConfig) -> list[str]:
    """Why ``config`` cannot run on more than one worker (empty when it can)."""
    out: list[str] = []
    for upstream in config.upstream_list:
        if upstream.transport == "stdio":
            out.append(
                f"upstream {upstream.url!r} is a stdio server: each worker would start its own copy, "
                "and a session's calls would reach different servers"
            )
    if config.store.session_state_in_store(multi_process=True):
        return out
    for index, rule in enumerate(config.policies.rules):
        if rule.evidence is not None or rule.requires:
            label = f"policies.rules[{index}]" + (f" ({rule.name!r})" if rule.name else "")
            out.append(
                f"{label} is an evidence or dependency gate: store.session_state: memory holds session "
                "evidence in each worker's memory, so a session's calls on different workers would not "
                "see each other's (remove the key, or set it to store)"
            )
    return out


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) ``host:port`` with ``SO_REUSEPORT``: the port is taken, no connection lands here."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        hint = (
            " (another process uses it; stop it or change listen.port)"
            if exc.errno == errno.EADDRINUSE
            else ""
        )
        raise StartupError(f"cannot listen on {host}:{port} for listen: {exc.strerror}{hint}") from None
    return sock


def supervise(config: HelioConfig, argv: Sequence[str], workers: int) -> int:
    """Run ``workers`` copies of ``argv`` (a ``helio start`` command line) on one port; their exit status."""
    problems = refusals(config)
    if problems:
        raise StartupError(
            f"--workers {workers} cannot run this config (use --workers 1):\n  " + "\n  ".join(problems)
        )
    reserved = reserve_port(config.listen.host, config.listen.port)
    port = int(reserved.getsockname()[1])
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    # Counters and histograms of every worker meet here; worker 0's /metrics adds them up.
    metrics_dir = tempfile.mkdtemp(prefix="helio-metrics-")  # private: mode 0700
    try:
        for index in range(workers):
            env = {
                **os.environ,
                WORKER_ENV: f"{index}:{port}",
                WORKERS_ENV: str(workers),
                MULTIPROC_ENV: metrics_dir,
            }
            children.append(subprocess.Popen([sys.executable, "-m", "helio_proxy", *argv], env=env))
        status = 0
        forgotten: set[int] = set()
        while True:
            exited = [c for c in children if c.poll() is not None]
            for child in exited:
                if child.pid not in forgotten:  # its open streams no longer count
                    mark_process_dead(child.pid, metrics_dir)
                    forgotten.add(child.pid)
            if len(exited) == len(children):
                break
            if exited and not stopping:
                status = exited[0].returncode
                stop(signal.SIGTERM, None)
            time.sleep(0.2)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if stopping and status == 0:
            return 0
        return status or next((c.returncode for c in children if c.returncode), 0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserved.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
