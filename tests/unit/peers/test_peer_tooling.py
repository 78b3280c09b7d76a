"""The peer installer fails loudly: a failed install is an error naming the command, never a skip."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.peers import tooling


def test_a_failing_install_command_raises_with_the_command_and_its_output() -> None:
    with pytest.raises(tooling.PeerInstallError) as failed:
        tooling._run([sys.executable, "-c", "import sys; print('registry said no'); sys.exit(3)"], "a peer")
    message = str(failed.value)
    assert "installing a peer" in message
    assert "exited with 3" in message
    assert "registry said no" in message


def test_missing_npm_peers_without_npm_on_path_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tooling, "NPM_PREFIX", tmp_path / "npm")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tooling.PeerInstallError, match="npm is not on PATH"):
        tooling.ensure_npm_peers()


def test_installed_peers_at_the_pinned_versions_are_not_reinstalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = tmp_path / "npm"
    for name, version in tooling.NPM_PEERS.items():
        package = prefix / "node_modules" / name
        package.mkdir(parents=True)
        (package / "package.json").write_text(f'{{"name": "{name}", "version": "{version}"}}')
    monkeypatch.setattr(tooling, "NPM_PREFIX", prefix)
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm: it must not be needed
    tooling.ensure_npm_peers()
