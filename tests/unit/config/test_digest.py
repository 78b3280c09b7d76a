"""The config hash is taken over the config in force, with secrets only as their digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helio_proxy.config import load_config
from helio_proxy.config.digest import canonical_config, config_digest, secret_values

TEXT = """version: '1'
environment: ${DEPLOY_ENV}
upstream:
  url: 'http://127.0.0.1:9/mcp'
  headers: {x-api-key: '${UPSTREAM_KEY}'}
dashboard:
  api_secret: '${DASHBOARD_SECRET}'
approval:
  channels:
    - type: slack
      bot_token: '${SLACK_BOT_TOKEN}'
      signing_secret: '${SLACK_SIGNING_SECRET}'
      channel: C1
"""
ENV = {
    "DEPLOY_ENV": "staging",
    "UPSTREAM_KEY": "upstream-key-1",
    "DASHBOARD_SECRET": "dashboard-secret-0123456789abcdef0123456789",
    "SLACK_BOT_TOKEN": "xoxb-bot-token",
    "SLACK_SIGNING_SECRET": "slack-signing-secret",
}


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_the_same_file_under_another_environment_value_has_another_hash(tmp_path: Path) -> None:
    """Issue 22 point 12: the hash was of the file's bytes, before ${VAR} substitution."""
    path = tmp_path / "helio.yaml"
    path.write_text(TEXT)
    first = load_config(path, env=ENV)
    again = load_config(path, env=dict(ENV))
    other_secret = load_config(path, env={**ENV, "UPSTREAM_KEY": "upstream-key-2"})
    other_value = load_config(path, env={**ENV, "DEPLOY_ENV": "production"})
    assert first.sha256 == again.sha256 == config_digest(first.config)
    assert len({first.sha256, other_secret.sha256, other_value.sha256}) == 3
    assert first.file_sha256 == other_secret.file_sha256 == hashlib.sha256(TEXT.encode()).hexdigest()
    assert first.referenced_env == frozenset(ENV)


def test_a_comment_or_a_reordering_that_changes_nothing_in_force_keeps_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    path.write_text(TEXT)
    first = load_config(path, env=ENV)
    path.write_text("# the same settings\n" + TEXT.replace("version: '1'\n", "") + "version: '1'\n")
    assert load_config(path, env=ENV).sha256 == first.sha256


def test_secrets_stand_in_the_hashed_form_only_as_their_digests(tmp_path: Path) -> None:
    path = tmp_path / "helio.yaml"
    path.write_text(TEXT)
    config = load_config(path, env=ENV).config
    canonical = canonical_config(config)
    text = json.dumps(canonical)
    for name in ("UPSTREAM_KEY", "DASHBOARD_SECRET", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        assert ENV[name] not in text
        assert _sha(ENV[name]) in text
    assert canonical["upstream"]["headers"] == {"x-api-key": _sha("upstream-key-1")}
    assert canonical["environment"] == "staging"  # not a secret: kept as it is
    assert secret_values(config) == {ENV[n] for n in ENV if n != "DEPLOY_ENV"}
