"""Config this version cannot honour is refused at startup, never silently ignored."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from helio_proxy import capabilities
from helio_proxy.app import HelioApp
from helio_proxy.config import LoadedConfig, parse_config_text
from helio_proxy.errors import StartupError

BASE = "version: '1'\nupstream:\n  url: 'http://127.0.0.1:9/mcp'\nlisten: {port: 0}\ndashboard: {enabled: false}\n"
BUDGET = "budgets:\n  - {name: daily, limit: 100, contributors: [{match: {tool: pay}, field: $.amount}]}\n"


def test_budgets_are_blocking_and_every_transport_and_several_upstreams_are_served() -> None:
    assert capabilities.blocking(parse_config_text(BASE, env={})) == []
    assert "budgets (daily)" in capabilities.blocking(parse_config_text(BASE + BUDGET, env={}))[0]
    stdio = BASE.replace(
        "url: 'http://127.0.0.1:9/mcp'", "url: 'stdio://x'\n  transport: stdio\n  command: srv"
    )
    assert capabilities.blocking(parse_config_text(stdio, env={})) == []
    sse = BASE.replace("url: 'http://127.0.0.1:9/mcp'", "url: 'http://127.0.0.1:9/sse'\n  transport: sse")
    assert capabilities.blocking(parse_config_text(sse, env={})) == []
    several = "version: '1'\ndashboard: {enabled: false}\nupstreams:\n  - {name: a, url: 'http://a/mcp'}\n  - {name: b, url: 'http://b/mcp'}\n"
    assert capabilities.blocking(parse_config_text(several, env={})) == []


def test_an_enabled_dashboard_is_a_notice_not_a_refusal() -> None:
    config = parse_config_text(BASE.replace("enabled: false", "api_secret: s"), env={})
    assert capabilities.blocking(config) == []
    assert "dashboard UI is not part of this build" in capabilities.notices(config)[0]


async def test_start_refuses_a_budget_config_before_binding_anything(tmp_path: Path) -> None:
    config = parse_config_text(BASE + BUDGET + f"audit: {{path: '{tmp_path / 'a.db'}'}}\n", env={})
    app = HelioApp(LoadedConfig(config=config, path=Path("helio.yaml"), sha256="0" * 64), out=io.StringIO())
    with pytest.raises(StartupError, match="budgets"):
        await app.start()
    assert app.listeners == []
    assert not (tmp_path / "a.db").exists()
