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
