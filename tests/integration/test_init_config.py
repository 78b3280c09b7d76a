"""The config ``helio init`` writes, run by the real proxy: it starts without a single warning."""

from __future__ import annotations

import io
from pathlib import Path

from click.testing import CliRunner

from helio_proxy import capabilities
from helio_proxy.app import HelioApp
from helio_proxy.cli import cli
from helio_proxy.config import load_config
from tests.harness import mcp_upstream


async def test_the_config_helio_init_writes_starts_without_a_warning_and_says_what_the_dashboard_serves(
    tmp_path: Path,
) -> None:
    target = tmp_path / "helio.yaml"
    assert CliRunner().invoke(cli, ["init", "-o", str(target)]).exit_code == 0
    async with mcp_upstream() as upstream:
        text = target.read_text()
        text = text.replace("'http://127.0.0.1:8080/mcp'", f"'{upstream}'")
        text = text.replace("port: 3000", "port: 0").replace("port: 3100", "port: 0")
        target.write_text(text.replace("./helio-audit.db", str(tmp_path / "audit.db")))
        out = io.StringIO()
        app = HelioApp(load_config(target), out=out, environ={})
        await app.start()
        await app.stop()
    printed = out.getvalue()
    assert "Warning" not in printed, printed
    assert "Dashboard API listening on" in printed
    assert ("Dashboard UI: not part of this build" in printed) is not capabilities.dashboard_ui_available()
