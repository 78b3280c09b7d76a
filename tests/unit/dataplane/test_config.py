"""``data_plane`` and ``upstream.credentials``: modes, rules, and no secret written in the config."""

from __future__ import annotations

import pytest

from helio_proxy.config import parse_config_text
from helio_proxy.errors import ConfigError

BASE = "version: '1'\ndashboard: {enabled: false}\n"


def test_a_literal_secret_in_from_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="names an environment variable"):
        parse_config_text(
            BASE
            + "upstream: {url: 'http://x/mcp', credentials: {type: bearer, from_env: 'sk_live_abc123-XYZ'}}\n"
        )


def test_credentials_need_exactly_one_source_and_match_the_transport() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        parse_config_text(BASE + "upstream: {url: 'http://x/mcp', credentials: {type: bearer}}\n")
    with pytest.raises(ConfigError, match="stdio"):
        parse_config_text(
            BASE + "upstream: {url: 'http://x/mcp', credentials: {type: env, env_var: T, from_env: T}}\n"
        )
    with pytest.raises(ConfigError, match="client_secret"):
        parse_config_text(
            BASE + "upstream: {url: 'http://x/mcp', credentials: {type: oauth2_client_credentials, "
            "token_url: 'http://a/t', client_id: c}}\n"
        )


def test_data_plane_modes_rules_and_overrides_load() -> None:
    config = parse_config_text(
        BASE
        + "upstream: {url: 'http://x/mcp', forward_authorization: true, data_plane: {unknown_tools: 'off'}}\n"
        "data_plane:\n  mode: warn\n  tools: [{tools: ['legacy_*'], input_schema: 'off'}]\n"
        "  scan: [{name: s, detect: [card_number], patterns: {emp: 'EMP-\\d+'}, action: block}]\n"
    )
    assert config.data_plane.mode == "warn"
    assert config.upstream is not None
    assert config.upstream.forward_authorization is True
    assert config.upstream.data_plane.unknown_tools == "off"


def test_an_unknown_detector_or_a_pattern_matching_nothing_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown detector"):
        parse_config_text(
            BASE + "upstream: {url: 'http://x/mcp'}\ndata_plane: {scan: [{name: s, detect: [ssn]}]}\n"
        )
    with pytest.raises(ConfigError, match="empty string"):
        parse_config_text(
            BASE + "upstream: {url: 'http://x/mcp'}\ndata_plane: {scan: [{name: s, patterns: {x: 'a*'}}]}\n"
        )


RULE = (
    "upstream: {url: 'http://x/mcp'}\n"
    "policies:\n  rules:\n    - {name: r, match: {tool: pay}, action: allow, data_plane: %s}\n"
)


def test_a_policy_rule_takes_data_plane_modes_and_scan_rules() -> None:
    config = parse_config_text(
        BASE
        + RULE
        % "{input_schema: warn, output_schema: 'off', scan: [{name: k, detect: [aws_access_key], action: block}]}"
    )
    settings = config.policies.rules[0].data_plane
    assert settings is not None
    assert (settings.input_schema, settings.output_schema, settings.unknown_tools) == ("warn", "off", None)
    assert [rule.name for rule in settings.scan] == ["k"]
    assert settings.scan[0].action == "block"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{input_schema: strict}", r"policies\.rules\[0\]\.data_plane\.input_schema: Input should be"),
        ("{mode: block}", r"policies\.rules\[0\]\.data_plane\.mode: Input should be"),
        ("{unknown_tools: true}", r"policies\.rules\[0\]\.data_plane\.unknown_tools"),
        ("{scan: [{name: k, detect: [ssn]}]}", "unknown detector"),
        (
            "{scan: [{name: k, detect: [email], action: drop}]}",
            r"data_plane\.scan\[0\]\.action: Input should be 'redact', 'block' or 'flag'",
        ),
        ("{scan: [{name: k}]}", "needs 'detect' and/or 'patterns'"),
        ("{inputschema: warn}", "inputschema"),
        ("{scan: [{name: k, detect: [email]}], refresh_interval: 1s}", "refresh_interval"),
    ],
)
def test_bad_data_plane_values_on_a_policy_rule_are_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config_text(BASE + RULE % value)
