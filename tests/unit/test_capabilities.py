"""Settings honoured only in part are reported as startup and validate warnings."""

from __future__ import annotations

from pathlib import Path

from helio_proxy import capabilities, console
from helio_proxy.config import parse_config_text

BASE = "version: '1'\nupstream:\n  url: 'http://127.0.0.1:9/mcp'\nlisten: {port: 0}\ndashboard: {enabled: false}\n"
BUDGET = "budgets:\n  - {name: daily, limit: 100, contributors: [{match: {tool: pay}, field: $.amount}]}\n"


def test_the_missing_dashboard_ui_is_a_property_of_the_build_not_a_config_notice() -> None:
    """Changed on purpose (issue 20): a fresh ``helio init`` config enables the dashboard and
    must validate without a warning; ``helio start`` refuses to start without the UI (issue 13)."""
    enabled = parse_config_text(BASE.replace("enabled: false", "api_secret: s"), env={})
    disabled = parse_config_text(BASE, env={})
    assert capabilities.notices(enabled) == []
    assert capabilities.dashboard_ui_notice(disabled) is None
    built = (Path(console.__file__).parent / "static" / "index.html").is_file()
    assert capabilities.dashboard_ui_available() is built
    notice = capabilities.dashboard_ui_notice(enabled)
    if built:
        assert notice is None
    else:
        assert notice is not None
        assert notice.startswith("not part of this build")


def test_limit_keys_that_fall_back_are_notices() -> None:
    rules = (
        "policies:\n  rules:\n"
        "    - name: per-agent\n      match: {tool: a}\n      action: rate_limit\n"
        "      limits: {max_calls: 1, window: 1m, key: agent}\n"
    )
    budget = BUDGET.replace("limit: 100,", "limit: 100, key: agent,")
    config = parse_config_text(BASE + rules + budget, env={})
    notices = capabilities.notices(config)
    assert any("'per-agent'" in n and "counts per session" in n for n in notices)
    assert any("budget 'daily'" in n and "counts per session" in n for n in notices)
