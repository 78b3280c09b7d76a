"""A proxy run by ``run_app`` freezes its startup heap once it serves; an embedded one does not."""

from __future__ import annotations

import asyncio
import gc
import io
from pathlib import Path

from click.testing import CliRunner

from helio_proxy.app import HelioApp
from helio_proxy.cli import cli
from helio_proxy.config import load_config
from tests.harness import mcp_upstream


async def _served(tmp_path: Path, *, freeze: bool) -> int:
    target = tmp_path / "helio.yaml"
    assert CliRunner().invoke(cli, ["init", "-o", str(target)]).exit_code == 0
    gc.unfreeze()
    try:
        async with mcp_upstream() as upstream:
            text = target.read_text().replace("'http://127.0.0.1:8080/mcp'", f"'{upstream}'")
            text = text.replace("port: 3000", "port: 0").replace("port: 3100", "port: 0")
            target.write_text(text.replace("./helio-audit.db", str(tmp_path / "audit.db")))
            app = HelioApp(load_config(target), out=io.StringIO(), environ={}, freeze_heap=freeze)
            running = asyncio.create_task(app.run())
            for _ in range(200):
                if "Config:" in app.out.getvalue():  # pyright: ignore[reportAttributeAccessIssue]
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)
            frozen = gc.get_freeze_count()
            app._stopped.set()  # pyright: ignore[reportPrivateUsage]
            await asyncio.wait_for(running, 30)
            return frozen
    finally:
        gc.unfreeze()


async def test_a_proxy_process_freezes_its_startup_heap_once_started(tmp_path: Path) -> None:
    assert await _served(tmp_path, freeze=True) > 10_000


async def test_an_embedded_proxy_leaves_the_collector_alone(tmp_path: Path) -> None:
    assert await _served(tmp_path, freeze=False) == 0
