"""Dependencies point one way: session ← evidence ← sideband, none of them reaching up into the
gateway, the app or the CLI (STYLE 3)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "packages" / "proxy" / "src" / "helio_proxy"
FORBIDDEN = {
    "session": {"evidence", "sideband", "gateway", "app", "cli", "transports"},
    "evidence": {"sideband", "gateway", "app", "cli", "transports"},
    "sideband": {"gateway", "app", "cli", "transports"},
}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found.update(n.split(".")[1] for n in names if n.startswith("helio_proxy.") and n.count(".") >= 1)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upwards(package: str) -> None:
    for path in sorted((SRC / package).glob("*.py")):
        reached = imported_packages(path) & FORBIDDEN[package]
        assert not reached, f"{path.name} imports {sorted(reached)}"
