"""Every test runs with its own temporary directory as the working directory, so a proxy started
without an explicit ``audit.path`` (default ``./helio-audit.db``) never writes into the repository."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
