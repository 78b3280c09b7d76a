"""Loading helio.yaml: strict keys with dotted path and line, interpolation, durations, cross-field rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from helio_proxy.config import load_config, parse_config_text
from helio_proxy.config.durations import parse_duration
from helio_proxy.errors import ConfigError

BASE = "version: '1'\nupstream:\n  url: 'http://127.0.0.1:8080/mcp'\ndashboard:\n  api_secret: s3cret\n"


def error_of(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, source="helio.yaml", env=env or {})
    return caught.value


def test_minimal_config_takes_the_reference_defaults() -> None:
    config = parse_config_text(BASE, env={})
    assert config.listen.host == "127.0.0.1"
    assert config.listen.port == 3000
    assert config.policies.default == "allow"
    assert config.policies.on_tool_drift == "block"
    assert config.session.on_unresolved == "deny"
    # The reference's chain, plus our SDK's _meta key between its two steps (for stdio agents).
    assert [(s.source, s.name) for s in config.session.identity] == [
        ("header", "x-helio-session-id"),
        ("meta", "io.gethelio/session-id"),
        ("legacy_header", None),
    ]
    assert config.audit.path == "./helio-audit.db"
    assert config.audit.retention.seconds == 90 * 86400
    assert config.approval.timeout.seconds == 300
    assert config.upstream_list[0].request_timeout.seconds == 30
    assert config.sdk.enabled is False
    assert config.sdk.port == 3200
    assert config.dashboard.port == 3100


def test_unknown_key_names_key_path_line_and_suggestion() -> None:
    error = error_of(BASE + "policies:\n  rules:\n    - matc:\n        tool: x\n      action: deny\n")
    assert error.line == 8
    assert error.path == "policies.rules[0].matc"
    assert "unknown key 'matc'" in error.message
    assert "did you mean 'match'" in error.message
    assert str(error).startswith("helio.yaml:8: policies.rules[0].matc:")


def test_unknown_top_level_key_is_fatal_but_x_keys_are_ignored() -> None:
    assert error_of(BASE + "polices: {}\n").path == "polices"
    parse_config_text(BASE + "x-defaults: &d {a: 1}\n", env={})


def test_unknown_key_inside_a_tagged_channel_suggests_from_that_channel_type() -> None:
    error = error_of(BASE + "approval:\n  channels:\n    - type: webhook\n      urll: 'http://x'\n")
    assert error.path == "approval.channels[0].urll"
    assert "did you mean 'url'" in error.message


def test_input_paths_with_dots_are_quoted_in_error_paths() -> None:
    error = error_of(
        BASE
        + "policies:\n  rules:\n    - match:\n        input:\n          $.a: {bogus: 1}\n      action: deny\n"
    )
    assert error.path == "policies.rules[0].match.input['$.a'].bogus"
    assert error.line == 10


def test_env_interpolation_in_nested_values_and_unset_variable_is_fatal() -> None:
    text = BASE.replace("s3cret", "${SECRET}") + "upstream_extra: 1\n"
    error = error_of(BASE.replace("s3cret", "${NOT_SET}"))
    assert 'environment variable "NOT_SET" is not set' in error.message
    assert error.path == "dashboard.api_secret"
    assert error.line == 5
    config = parse_config_text(
        BASE.replace("s3cret", "pre-${SECRET}-post") + "listen:\n  allowed_origins: ['https://${HOST}']\n",
        env={"SECRET": "abc", "HOST": "app.example.com"},
    )
    assert config.dashboard.api_secret == "pre-abc-post"
    assert config.listen.allowed_origins == ["https://app.example.com"]
    assert "upstream_extra" in text


@pytest.mark.parametrize("value", ["30s", "5m", "1h", "90d", "0s"])
def test_valid_durations(value: str) -> None:
    assert parse_duration(value) == value


@pytest.mark.parametrize("value", ["30", "1.5h", "1h30m", "5 m", "10ms", "-1s", "", "1w"])
def test_invalid_durations_are_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


def test_invalid_duration_in_config_names_the_field() -> None:
    error = error_of(BASE.replace("  url:", "  request_timeout: 1.5s\n  url:"))
    assert error.path == "upstream.request_timeout"


def test_duplicate_keys_are_rejected() -> None:
    error = error_of(BASE + "listen: {port: 1}\nlisten: {port: 2}\n")
    assert "duplicate key 'listen'" in error.message
    assert error.line == 7


def test_yaml_syntax_error_reports_the_line() -> None:
    error = error_of(BASE + "policies:\n  rules: [\n")
    assert error.message.startswith("invalid YAML")
    assert error.line is not None


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "policies:\n  rules:\n    - match: {tool: a}\n      action: rate_limit\n",
            "needs limits.max_calls and limits.window",
        ),
        (
            "policies:\n  rules:\n    - match: {tool: a}\n      action: spend_limit\n",
            "needs limits.max_spend",
        ),
        ("policies:\n  rules:\n    - match: {tool: a}\n", "'action' is required"),
        (
            "policies:\n  rules:\n    - match: {environment: prod}\n      action: deny\n",
            "needs the top-level 'environment'",
        ),
        (
            "policies:\n  rules:\n    - match: {tool: a}\n      action: require_approval\n      approval: {channel: pager}\n",
            "unknown approval channel 'pager'",
        ),
        (
            "policies:\n  rules:\n    - match: {tool: a}\n      action: rate_limit\n      limits: {max_calls: 1, window: 1m, key: sender_id}\n",
            "sdk.enabled",
        ),
        (
            "budgets:\n  - {name: a, limit: 5, contributors: [{match: {tool: x}, field: $.a}]}\n  - {name: a, limit: 5, contributors: [{match: {tool: x}, field: $.a}]}\n",
            "budget names must be unique",
        ),
        ("listen:\n  allowed_origins: ['*']\n", "wildcards"),
        ("  trusted_proxies: ['*']\n", "not an IP address or network"),
        ("  trusted_proxies: ['proxy.internal']\n", "not an IP address or network"),
        ("upstream_unused: 1\n", "unknown key"),
        (
            "audit:\n  durability: strict\n  writer: process\n",
            "audit.writer: process needs durability: batched",
        ),
        ("audit:\n  writer: subprocess\n", "'auto', 'process' or 'thread'"),
    ],
)
def test_cross_field_and_value_rules(snippet: str, expected: str) -> None:
    assert expected in error_of(BASE + snippet).message


def test_require_approval_without_api_secret_is_fatal() -> None:
    text = "version: '1'\nupstream: {url: 'http://a/mcp'}\ndashboard: {allow_open_mode: true}\npolicies:\n  rules:\n    - match: {tool: a}\n      action: require_approval\n"
    assert "needs dashboard.api_secret" in error_of(text).message


def test_dashboard_needs_a_secret_unless_open_mode_or_disabled() -> None:
    assert (
        "dashboard.api_secret is required"
        in error_of("version: '1'\nupstream: {url: 'http://a/mcp'}\n").message
    )
    parse_config_text("version: '1'\nupstream: {url: 'http://a/mcp'}\ndashboard: {enabled: false}\n", env={})
    parse_config_text(
        "version: '1'\nupstream: {url: 'http://a/mcp'}\ndashboard: {allow_open_mode: true}\n", env={}
    )


def test_exactly_one_of_upstream_and_upstreams() -> None:
    both = BASE + "upstreams:\n  - {name: a, url: 'http://a/mcp'}\n"
    assert "exactly one of" in error_of(both).message
    config = parse_config_text(
        "version: '1'\ndashboard: {enabled: false}\nupstreams:\n  - {name: a, url: 'http://a/mcp'}\n  - {name: b, url: 'http://b/mcp'}\n",
        env={},
    )
    assert [u.name for u in config.upstream_list] == ["a", "b"]


def test_reserved_static_headers_and_non_x_forward_headers_are_rejected() -> None:
    assert "reserved" in error_of(BASE.replace("  url:", "  headers: {Mcp-Session-Id: x}\n  url:")).message
    assert (
        "must start with 'x-'"
        in error_of(BASE.replace("  url:", "  forward_headers: [cookie]\n  url:")).message
    )


def test_stdio_upstream_needs_a_command() -> None:
    text = "version: '1'\ndashboard: {enabled: false}\nupstream: {url: 'stdio://x', transport: stdio}\n"
    assert "needs 'command'" in error_of(text).message


def test_gate_without_action_means_allow() -> None:
    config = parse_config_text(
        BASE + "policies:\n  rules:\n    - match: {tool: refund}\n      requires: [lookup]\n", env={}
    )
    rule = config.policies.rules[0]
    assert rule.is_gate
    assert rule.effective_action == "allow"


def test_version_must_be_one() -> None:
    assert error_of(BASE.replace("version: '1'", "version: '2'")).path == "version"
    parse_config_text(BASE.replace("version: '1'", "version: 1"), env={})


def test_load_config_reports_missing_file_and_hashes_content(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "helio.yaml"
    path.write_text(BASE)
    loaded = load_config(path, env={})
    assert len(loaded.sha256) == 64
    assert loaded.path == path


def test_empty_and_non_mapping_files_are_explained() -> None:
    assert "empty" in error_of("").message
    assert "mapping" in error_of("- a\n- b\n").message


def test_a_default_stands_in_for_an_unset_or_empty_variable_and_a_set_one_wins() -> None:
    text = BASE + "listen:\n  port: ${HELIO_PORT:-3000}\n  host: '${HELIO_HOST:-127.0.0.1}'\n"
    assert parse_config_text(text, env={}).listen.port == 3000
    assert parse_config_text(text, env={"HELIO_PORT": ""}).listen.port == 3000
    assert parse_config_text(text, env={"HELIO_PORT": "4123"}).listen.port == 4123
    assert parse_config_text(text, env={}).listen.host == "127.0.0.1"


def test_an_empty_default_is_allowed_and_a_bad_name_with_a_default_is_still_an_error() -> None:
    config = parse_config_text(BASE.replace("s3cret", "s3cret${SUFFIX:-}"), env={})
    assert config.dashboard.api_secret == "s3cret"
    error = error_of(BASE.replace("s3cret", "${1BAD:-x}"))
    assert "invalid environment variable reference ${1BAD:-x}" in error.message


def test_an_unset_variable_error_says_how_to_give_a_default() -> None:
    error = error_of(BASE.replace("s3cret", "${NOT_SET}"))
    assert "${NOT_SET:-VALUE}" in error.message


def test_dashboard_trusted_proxies_are_addresses_or_networks_and_default_to_none() -> None:
    assert parse_config_text(BASE, env={}).dashboard.trusted_proxies == []
    text = BASE + "  trusted_proxies: ['10.0.0.5', '10.0.0.0/8', '::1', 'fd00::/8']\n"
    assert parse_config_text(text, env={}).dashboard.trusted_proxies == [
        "10.0.0.5",
        "10.0.0.0/8",
        "::1",
        "fd00::/8",
    ]
