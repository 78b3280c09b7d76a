"""Hot reload: a valid file swaps the snapshot; an invalid one keeps it; restart-only sections stay."""

from __future__ import annotations

from pathlib import Path

from helio_proxy.config import load_config
from helio_proxy.gateway.reloader import reload_snapshot
from helio_proxy.gateway.snapshot import Snapshot, Snapshots
from helio_proxy.policy import CallFacts

BASE = """version: '1'
upstream: {url: 'http://127.0.0.1:9/mcp'}
listen: {port: 3000}
dashboard: {enabled: false}
policies:
  default: allow
  rules:
    - name: no-deletes
      match: {tool: 'delete_*'}
      action: deny
"""

EXTRA_RULE = """    - name: no-email
      match: {tool: send_email}
      action: deny
"""


def start(tmp_path: Path, text: str = BASE) -> tuple[Snapshots, Path]:
    path = tmp_path / "helio.yaml"
    path.write_text(text)
    return Snapshots(Snapshot.of(load_config(path))), path


def test_a_valid_change_swaps_in_the_new_rules(tmp_path: Path) -> None:
    snapshots, path = start(tmp_path)
    assert not snapshots.current.policy.decide(CallFacts("send_email", {})).blocks
    path.write_text(BASE + EXTRA_RULE)
    outcome = reload_snapshot(snapshots, path)
    assert outcome.applied
    assert outcome.lines == ["Policy reloaded: 2 rules (default: allow)"]
    assert snapshots.current.policy.decide(CallFacts("send_email", {})).blocks


def test_an_invalid_file_keeps_the_current_snapshot_and_says_where(tmp_path: Path) -> None:
    snapshots, path = start(tmp_path)
    before = snapshots.current
    path.write_text(BASE + "    - name: broken\n      match: {tool: x}\n      action: explode\n")
    outcome = reload_snapshot(snapshots, path)
    assert not outcome.applied
    assert snapshots.current is before
    [line] = outcome.lines
    assert line.startswith("Config reload failed (keeping current configuration): ")
    assert f"{path}:13: policies.rules[1].action" in line


def test_invalid_yaml_and_unsafe_regexes_are_rejected_too(tmp_path: Path) -> None:
    snapshots, path = start(tmp_path)
    before = snapshots.current
    for broken in (
        BASE + "  rules: [\n",
        BASE + "    - name: slow\n      match: {input: {'$.q': {regex: '(a+)+$'}}}\n      action: deny\n",
    ):
        path.write_text(broken)
        outcome = reload_snapshot(snapshots, path)
        assert not outcome.applied
        assert snapshots.current is before


def test_an_unchanged_file_is_not_reloaded(tmp_path: Path) -> None:
    snapshots, path = start(tmp_path)
    path.write_text(BASE)
    assert reload_snapshot(snapshots, path).lines == []


def test_restart_only_sections_keep_their_startup_values_with_a_warning(tmp_path: Path) -> None:
    snapshots, path = start(tmp_path)
    changed = BASE.replace("port: 3000", "port: 4000").replace(
        "  default: allow\n", "  default: allow\n  hot_reload: false\n"
    )
    path.write_text(changed + EXTRA_RULE)
    outcome = reload_snapshot(snapshots, path)
    assert outcome.applied
    assert outcome.lines[-1] == "Policy reloaded: 2 rules (default: allow)"
    assert any("'listen'" in line for line in outcome.lines)
    assert any("'policies.hot_reload'" in line for line in outcome.lines)
    config = snapshots.current.config
    assert config.listen.port == 3000
    assert config.policies.hot_reload is True
    assert len(config.policies.rules) == 2


def test_new_rules_that_need_a_restart_only_change_are_rejected(tmp_path: Path) -> None:
    """A rule on match.environment needs the top-level environment, which only applies at restart."""
    snapshots, path = start(tmp_path)
    before = snapshots.current
    path.write_text(
        "environment: prod\n"
        + BASE
        + "    - name: prod\n      match: {environment: prod}\n      action: deny\n"
    )
    outcome = reload_snapshot(snapshots, path)
    assert not outcome.applied
    assert snapshots.current is before
    [line] = outcome.lines
    assert "environment" in line
    assert "restart" in line
    assert "\n" not in line


def test_a_reload_warns_about_rules_that_can_only_fail_closed(tmp_path: Path) -> None:
    with_secret = BASE.replace(
        "dashboard: {enabled: false}", "dashboard: {api_secret: 'ssssssssssssssssssssssssssssssss'}"
    )
    snapshots, path = start(tmp_path, with_secret)
    path.write_text(
        with_secret + "    - name: approve\n      match: {tool: refund}\n      action: require_approval\n"
    )
    outcome = reload_snapshot(snapshots, path)
    assert outcome.applied
    assert any("approval_unavailable" in line for line in outcome.lines)
