"""The console's files on the dashboard port: files, the SPA fallback, what is never served, and
``helio start`` refusing to run without them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from helio_proxy import console
from helio_proxy.app import HelioApp
from helio_proxy.config import load_config_text
from helio_proxy.console import MISSING_ASSETS, ConsoleAssets, assets_available
from helio_proxy.errors import StartupError

INDEX = "<!doctype html><title>console</title>"


@pytest.fixture
def static(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-abc.js").write_text("console.log(1)")
    (root / ".source-sha256").write_text("stamp")
    (tmp_path / "secret.txt").write_text("outside")
    return root


def _client(root: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=ConsoleAssets(root)), base_url="http://t")


async def test_files_are_served_and_every_other_path_gets_the_app(static: Path) -> None:
    async with _client(static) as http:
        js = await http.get("/assets/index-abc.js")
        assert js.status_code == 200
        assert js.text == "console.log(1)"
        assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
        for path in ("/", "/feed", "/audit/123", "/sessions/a%20b?x=1"):
            page = await http.get(path)
            assert page.status_code == 200
            assert page.text == INDEX
            assert page.headers["cache-control"] == "no-cache"
            assert page.headers["referrer-policy"] == "no-referrer"
            assert page.headers["x-frame-options"] == "DENY"
            assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_nothing_outside_the_folder_nor_a_dotfile_is_served(static: Path) -> None:
    async with _client(static) as http:
        for path in ("/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt", "/.source-sha256"):
            answer = await http.get(path)
            assert "outside" not in answer.text
            assert "stamp" not in answer.text
        missing = await http.get("/assets/gone.js")
        assert missing.status_code == 404
        assert missing.json()["code"] == "not_found"
        posted = await http.post("/feed")
        assert posted.status_code == 405
        assert posted.json()["code"] == "method_not_allowed"


def test_assets_available_looks_for_index_html(static: Path, tmp_path: Path) -> None:
    assert assets_available(static)
    assert not assets_available(tmp_path / "nowhere")


CONFIG = """version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
listen: {port: 0}
audit: {path: '%s'}
dashboard: {port: 0, api_secret: 'a-secret-long-enough-for-the-dashboard'}
"""


async def test_start_refuses_to_run_the_dashboard_without_its_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "STATIC_DIR", tmp_path / "missing")
    loaded = load_config_text(CONFIG % (tmp_path / "audit.db"), path=str(tmp_path / "helio.yaml"), env={})
    app = HelioApp(loaded, require_console=True)
    with pytest.raises(StartupError) as caught:
        await app.start()
    assert str(caught.value) == MISSING_ASSETS
    assert "./dev build" in MISSING_ASSETS
    assert "dashboard.enabled: false" in MISSING_ASSETS
