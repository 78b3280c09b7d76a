"""``store.session_state``: where session state lives, ``auto`` resolved against ``store.url``."""

from __future__ import annotations

import pytest

from helio_proxy.config import parse_config_text
from helio_proxy.errors import ConfigError

BASE = "version: '1'\nupstream:\n  url: 'http://127.0.0.1:8080/mcp'\ndashboard:\n  api_secret: s3cret\n"


@pytest.mark.parametrize(
    ("store", "in_store"),
    [
        ("", False),  # SQLite file at audit.path, auto
        ("store: {session_state: store}\n", True),
        ("store: {url: 'sqlite:///tmp/h.db'}\n", False),
        ("store: {url: 'sqlite:///tmp/h.db', session_state: store}\n", True),
        ("store: {url: 'postgresql://db/helio'}\n", True),
        ("store: {url: 'postgres://db/helio'}\n", True),
        ("store: {url: 'postgresql+psycopg://db/helio'}\n", True),
        ("store: {url: 'postgresql://db/helio', session_state: memory}\n", False),
    ],
)
def test_session_state_is_in_the_store_on_postgresql_or_when_asked(store: str, in_store: bool) -> None:
    config = parse_config_text(BASE + store, env={})
    assert config.store.session_state_in_store() is in_store


def test_an_unknown_session_state_is_refused_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(BASE + "store: {session_state: shared}\n", source="helio.yaml", env={})
    assert "store.session_state" in str(caught.value)
