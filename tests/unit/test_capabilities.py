"""Settings honoured only in part are reported as startup and validate warnings."""

from __future__ import annotations

from helio_proxy import capabilities
from helio_proxy.config import parse_config_text

BASE = "version: '1'\nupstream:\n  url: 'http://127.0.0.1:9/mcp'\nlisten: {port: 0}\ndashboard: {enabled: false}\n"
BUDGET = "budgets:\n  - {name: daily, limit: 100, contributors: [{match: {tool: pay}, field: $.amount}]}\n"


def test_an_enabled_dashboard_is_a_notice() -> None:
    config = parse_config_text(BASE.replace("enabled: false", "api_secret: s"), env={})
    assert "dashboard UI is not part of this build" in capabilities.notices(config)[0]


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
