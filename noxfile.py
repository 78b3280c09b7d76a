"""Every check developers and CI run. ``./dev test`` runs them all; ``uv run nox -s NAME`` runs one.

Sessions run inside the uv project environment (``uv run nox``) except ``sdk_isolated``, which
builds a fresh venv holding nothing but the SDK and pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "docs", "sdk_isolated", "tests", "e2e", "browser"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
PYTEST_NO_TESTS = 5
"""pytest's exit code when nothing was collected; a session that finds no tests is not a failure."""


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False).returncode == 0


def ensure_postgres(session: nox.Session) -> None:
    """Start the local PostgreSQL cluster if it is installed but down; fail loudly if absent."""
    if shutil.which("pg_isready") and _pg_ready():
        return
    clusters = Path("/etc/postgresql")
    if not shutil.which("pg_ctlcluster") or not clusters.is_dir():
        session.error(
            "PostgreSQL is needed for the store tests: install it (apt-get install postgresql) and retry"
        )
    for version in sorted(p.name for p in clusters.iterdir()):
        session.run(
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            version,
            "main",
            "start",
            external=True,
            success_codes=[0, 2],
        )
    for _ in range(50):
        if _pg_ready():
            return
        subprocess.run(["sleep", "0.2"], check=False)
    session.error("PostgreSQL did not become ready on 127.0.0.1:5432")


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff lint and format check; the package layering contracts (import-linter, ``[tool.importlinter]``)."""
    targets = ["packages", "tests", "examples", "benchmarks", "noxfile.py"]
    session.run("ruff", "check", *targets)
    session.run("ruff", "format", "--check", *targets)
    session.run("lint-imports")


@nox.session(python=False)
def typecheck(session: nox.Session) -> None:
    """pyright in strict mode on both packages' sources."""
    session.run("pyright")


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    """The generated references match the schema and the commands; every docs YAML example loads;
    the site builds with ``mkdocs build --strict`` (every page in the nav, every link and anchor resolves)."""
    session.run("python", "-m", "helio_proxy.config.docgen", "--check", "docs/configuration.md")
    session.run("python", "-m", "helio_proxy.cli.docgen", "--check", "docs/cli-reference.md")
    session.run("python", "-m", "helio_proxy.operator.docgen", "--check", "docs/rest-reference.md")
    session.run("pytest", "-q", "tests/unit/docs", success_codes=[0, PYTEST_NO_TESTS])
    with tempfile.TemporaryDirectory(prefix="helio-site-") as site:
        session.run(
            "mkdocs", "build", "--strict", "--quiet", "--site-dir", site, env={"NO_MKDOCS_2_WARNING": "1"}
        )


@nox.session(venv_backend="uv")
def sdk_isolated(session: nox.Session) -> None:
    """The SDK installs and passes its tests with only the standard library (plus pytest)."""
    session.install("./packages/sdk", "pytest")
    session.run(
        "python", "-c", "import helio, sys; print('helio', helio.__version__, 'imports from', helio.__file__)"
    )
    ini = ROOT / "tests/unit/sdk/pytest.ini"
    if ini.exists():
        session.run(
            "pytest",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ini),
            "tests/unit/sdk",
            success_codes=[0, PYTEST_NO_TESTS],
        )


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Unit and integration tests (in-process; real MCP SDK peers; local PostgreSQL)."""
    ensure_postgres(session)
    args = session.posargs or [
        "tests/unit",
        "tests/integration",
        "tests/fuzz",
        "--ignore=tests/unit/sdk",
        "--ignore=tests/unit/docs",
        # Two processes (one a core here): the in-process tests are independent (each PostgreSQL test
        # has its own schema, each test its own directory and ports); a file stays on one worker so
        # its module fixtures are built once.
        "-n",
        "auto",
        "--dist",
        "loadfile",
    ]
    session.run("pytest", *args, success_codes=[0, PYTEST_NO_TESTS])


FUZZ_INPUTS = 100_000
"""Inputs per surface in ``nox -s fuzz`` (``HELIO_FUZZ_INPUTS`` overrides it)."""
FUZZ_RSS_CEILING_MIB = 1024
"""The fuzzed proxy's RSS must stay under this (docs/hardening.md)."""

UV = os.environ.get("UV") or shutil.which("uv") or "uv"
"""The uv running this nox (``uv run`` sets ``UV``): ``./dev`` installs its own under .tools/, not on PATH."""


@nox.session(python=False)
def fuzz(session: nox.Session) -> None:
    """The fuzz campaign (not in the default set): the hypothesis suite at HELIO_FUZZ_INPUTS inputs per
    surface (default 100,000) with the RSS ceiling checked, then atheris over each parser as many runs."""
    count = int(os.environ.get("HELIO_FUZZ_INPUTS", FUZZ_INPUTS))
    env = {"HELIO_FUZZ_INPUTS": str(count), "HELIO_FUZZ_RSS_CEILING_MIB": str(FUZZ_RSS_CEILING_MIB)}
    session.run("pytest", "tests/fuzz", "-p", "no:cacheprovider", "--timeout=0", *session.posargs, env=env)
    for target in ("jsonlimits", "jsonrpc", "jsonpath", "regex", "config"):
        session.log(f"atheris: {count:,} runs over {target}")
        session.run(
            UV,
            "run",
            "--with",
            "atheris<3.1",
            "python",
            "tests/fuzz/atheris_parsers.py",
            f"-runs={count}",
            "-print_final_stats=1",
            f"-artifact_prefix={tempfile.gettempdir()}/helio-fuzz-",
            env={"HELIO_ATHERIS_TARGET": target},
            external=True,
        )


def ensure_peers(session: nox.Session) -> None:
    """Install the independent MCP peers under .tools/ (npm peers + Node 22, the mcp 1.x venv).

    Idempotent (nothing is fetched when they are present) and registry-only; a failed install
    fails the session with the command's output.
    """
    session.run("python", "-m", "tests.peers.tooling")


@nox.session(python=False)
def peers(session: nox.Session) -> None:
    """Only install the peers the e2e tests use (see tests/peers/tooling.py)."""
    ensure_peers(session)


@nox.session(python=False)
def e2e(session: nox.Session) -> None:
    """End-to-end tests: real processes on real ports, and independent peers (mcp 1.x, npm, conformance)."""
    ensure_postgres(session)
    ensure_peers(session)
    ensure_console(session)  # helio start and helio demo serve it
    ensure_nginx(session)  # tests/e2e/test_replicas_nginx.py puts it in front of three replicas
    env = {"HELIO_E2E": "1", **({"CI": os.environ["CI"]} if "CI" in os.environ else {})}
    # Two files at a time: most of an e2e test is waiting for the processes it started (about
    # 6 minutes one file at a time on a 2-core machine, under 4 in two workers). Every test takes
    # free ports and its own directory and PostgreSQL schema; a file stays on one worker.
    args = session.posargs or ["tests/e2e", "-m", "not replicas", "-n", "2", "--dist", "loadfile"]
    session.run("pytest", *args, env=env, success_codes=[0, PYTEST_NO_TESTS])


@nox.session(python=False)
def replicas(session: nox.Session) -> None:
    """Replica failure behaviour (not in the default sessions; about 2 minutes; needs root): a
    replica SIGKILLed mid-load, PostgreSQL restarted mid-load (the shared local server: other
    suites running meanwhile see it go down for a few seconds), a replica cut off from the database
    in a network namespace of its own. PostgreSQL is started again afterwards whatever happens."""
    ensure_postgres(session)
    env = {"HELIO_E2E": "1", "HELIO_REPLICAS": "1"}
    try:
        session.run(
            "pytest", *(session.posargs or ["tests/e2e/test_replicas_e2e.py", "-m", "replicas"]), env=env
        )
    finally:
        ensure_postgres(session)


def ensure_nginx(session: nox.Session) -> None:
    """Debian's nginx for the replica tests (``apt-get install -y nginx`` when it is missing and we
    are root; idempotent). The tests run it unprivileged from a config of their own, so the
    package's service is never started."""
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        session.error("the replica e2e tests need nginx (Debian: apt-get install nginx)")
    # RUNLEVEL=1: invoke-rc.d then leaves the package's service stopped (no daemon on port 80).
    env = {"DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run("apt-get", "install", "-y", "-qq", "nginx", external=True, env=env)


def ensure_console(session: nox.Session) -> None:
    """Build the operator console when its sources changed (idempotent; see packages/dashboard/build.py)."""
    session.run("python", "packages/dashboard/build.py")


def ensure_chromium(session: nox.Session) -> None:
    """Debian's Chromium for Playwright, and ``ss`` (iproute2) with which a test cuts the console's
    event stream (``apt-get install -y`` what is missing)."""
    missing = [
        package
        for package, present in (
            ("chromium", Path("/usr/bin/chromium").exists()),
            ("iproute2", shutil.which("ss") is not None),
        )
        if not present
    ]
    if not missing:
        return
    if not shutil.which("apt-get"):
        session.error(
            f"the browser tests need {' and '.join(missing)} (Debian: apt-get install {' '.join(missing)})"
        )
    session.run("apt-get", "update", "-qq", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-qq",
        *missing,
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


@nox.session(python=False)
def browser(session: nox.Session) -> None:
    """The operator console in Debian's Chromium (Playwright) against a real ``helio start`` and real
    agents; screenshots of every screen and an axe-core scan land in test-artifacts/."""
    ensure_chromium(session)
    ensure_console(session)
    env = {"HELIO_E2E": "1", **({"CI": os.environ["CI"]} if "CI" in os.environ else {})}
    session.run("pytest", *(session.posargs or ["tests/browser"]), env=env)


def ensure_wrk(session: nox.Session) -> None:
    """Install wrk from Debian when it is missing (idempotent); without it the benchmark falls back
    to its in-script aiohttp load generator and says so."""
    if shutil.which("wrk"):
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        session.run("apt-get", "install", "-y", "-q", "wrk", external=True, success_codes=[0, 100])
    if not shutil.which("wrk"):
        session.warn("wrk is not installed; throughput is measured with the in-script aiohttp load generator")


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """The benchmarks of docs/performance.md (not in the default sessions; about 20 minutes):
    Helio against direct, a bare forwarder and the Python MCP proxies, the CPU per call of both apps
    driven in one process (bench_inprocess.py), then the scale figures
    (limits at 10 and 100,000 charges, limits through ``helio start``, open sessions, decide() by
    rule count, audit records/s),
    and three replicas behind nginx against one (bench_replicas.py).
    ``uv run nox -s bench -- --rounds 1`` passes options to bench_compare.py."""
    ensure_wrk(session)
    ensure_postgres(session)
    ensure_nginx(session)
    session.run("python", "benchmarks/bench_compare.py", *session.posargs)
    session.run("python", "benchmarks/bench_inprocess.py", "--audit-parts")
    session.run("python", "benchmarks/bench_scale.py", "--part", "limits,limits-start,sessions")
    session.run("python", "benchmarks/bench_decide.py")
    session.run("python", "benchmarks/bench_audit.py")
    session.run("python", "benchmarks/bench_replicas.py")


@nox.session(python=False)
def soak(session: nox.Session) -> None:
    """The bounded loopback load test of docs/availability.md (not in the default sessions; about
    2 minutes): 500 tools/call/s for 60 s against a real ``helio start`` whose upstream fails for
    10 s in the middle; every call answered, one audit record per call, RSS back near its baseline.
    ``uv run nox -s soak -- --rate 200`` passes options to soak_load.py."""
    session.run("python", "benchmarks/soak_load.py", *session.posargs)
