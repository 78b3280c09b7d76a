"""``helio policy replay``: recorded calls decided again by a new config, nothing forwarded.

The store is seeded with a few thousand ``tool_call`` records whose recorded decisions follow the
old rule (payments over 1000 denied); the new config lowers the threshold to 500, so exactly the
payments in (500, 1000] flip, and nothing else does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from helio_proxy.audit.chain import append_rows
from helio_proxy.audit.records import AuditRecord, PolicyReloadRecord, ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.cli import cli
from helio_proxy.store import create_store

CALLS = 3000
RULES = """version: '1'
upstream: {{url: 'http://127.0.0.1:9/mcp'}}
dashboard: {{enabled: false}}
audit: {{path: '{db}'}}
policies:
  default: allow
  rules:
    - name: no-deletes
      match: {{tool: 'delete_*'}}
      action: deny
    - name: large-payments
      match: {{tool: create_payment, input: {{'$.amount': {{gt: {limit}}}}}}}
      action: deny
"""


def _amount(i: int) -> Decimal:
    return Decimal(i * 37 % 1500) + Decimal("0.5")


def _recorded(i: int, at: datetime) -> ToolCallRecord:
    """Call ``i`` as the proxy recorded it under the old rules (threshold 1000)."""
    if i % 10 == 0:
        return ToolCallRecord(
            timestamp=at,
            tool_name="delete_user",
            tool_input={"user_id": f"u{i}"},
            policy_decision="deny",
            block_reason="policy_denied",
            matched_rule="no-deletes",
            matched_rule_index=0,
            session_id=f"s{i % 7}",
        )
    if i % 3 == 0:
        return ToolCallRecord(
            timestamp=at, tool_name="get_weather", tool_input={"city": "Leeds"}, session_id=f"s{i % 7}"
        )
    amount = _amount(i)
    big = amount > 1000
    return ToolCallRecord(
        timestamp=at,
        tool_name="create_payment",
        tool_input={"amount": float(amount), "currency": "GBP"},
        policy_decision="deny" if big else "allow",
        block_reason="policy_denied" if big else None,
        matched_rule="large-payments" if big else None,
        matched_rule_index=1 if big else None,
        session_id=f"s{i % 7}",
    )


def _seed(db: Path, now: datetime) -> list[int]:
    """Seed the store; the sequence numbers of the calls the new rule must flip."""
    builder = RowBuilder(Redactor())
    records: list[AuditRecord] = [
        # Older than the window: never replayed, though the new rule would flip it.
        ToolCallRecord(
            timestamp=now - timedelta(days=3),
            tool_name="create_payment",
            tool_input={"amount": 700},
            session_id="old",
        ),
        PolicyReloadRecord(timestamp=now - timedelta(hours=2), outcome="applied"),
    ]
    start = now - timedelta(hours=20)
    records += [_recorded(i, start + timedelta(seconds=i * 10)) for i in range(CALLS)]
    rows = [builder.build(record, "c" * 64) for record in records]
    store = create_store(f"sqlite:///{db}")
    store.open_sync()
    try:
        store.submit(lambda conn: append_rows(conn, rows, signer=None)).result(timeout=30)
    finally:
        store.close_sync()
    offset = 2  # the two records before the calls take sequence numbers 1 and 2
    return [
        offset + i + 1
        for i in range(CALLS)
        if i % 10 != 0 and i % 3 != 0 and Decimal(500) < _amount(i) <= Decimal(1000)
    ]


def _configs(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "audit.db"
    old, new = tmp_path / "helio.yaml", tmp_path / "new.yaml"
    old.write_text(RULES.format(db=db, limit=1000))
    new.write_text(RULES.format(db=db, limit=500))
    return old, new


def _replay(config: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["policy", "replay", "-c", str(config), "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_replay_reports_exactly_the_calls_a_lowered_threshold_flips(tmp_path: Path) -> None:
    _, new = _configs(tmp_path)
    expected = _seed(tmp_path / "audit.db", datetime.now(UTC))
    assert 100 < len(expected) < CALLS

    report = _replay(new, "--since", "24h")

    assert report["calls"] == CALLS
    assert [flip["seq"] for flip in report["flips"]] == expected
    assert report["flipped"] == len(expected)
    assert report["transitions"] == [{"before": "allow", "after": "deny", "calls": len(expected)}]
    flip = report["flips"][0]
    assert flip["tool"] == "create_payment"
    assert flip["before"] == {"decision": "allow", "rule": None}
    assert flip["after"] == {"decision": "deny", "rule": "large-payments", "reason": "policy_denied"}
    assert report["after"]["deny"] - report["before"]["deny"] == len(expected)
    assert report["before"]["allow"] - report["after"]["allow"] == len(expected)
    rules = report["rules"]
    assert rules["large-payments"]["after"] - rules["large-payments"]["before"] == len(expected)
    assert rules["large-payments"]["flips"] == len(expected)
    assert rules["no-deletes"] == {"before": CALLS // 10, "after": CALLS // 10, "flips": 0}
    assert rules["(default)"]["flips"] == 0
    assert report["rule_changes"] == 0


def test_replaying_the_config_that_made_the_decisions_flips_nothing(tmp_path: Path) -> None:
    old, _ = _configs(tmp_path)
    _seed(tmp_path / "audit.db", datetime.now(UTC))
    report = _replay(old)
    assert report["calls"] == CALLS
    assert report["flips"] == []
    assert report["before"] == report["after"]


def test_the_window_bounds_what_is_replayed(tmp_path: Path) -> None:
    _, new = _configs(tmp_path)
    _seed(tmp_path / "audit.db", datetime.now(UTC))
    assert _replay(new, "--since", "7d")["calls"] == CALLS + 1  # the three-day-old call too
    assert _replay(new, "--since", "1h")["calls"] == 0


def test_the_text_summary_lists_counts_transitions_rules_and_flipped_calls(tmp_path: Path) -> None:
    _, new = _configs(tmp_path)
    expected = _seed(tmp_path / "audit.db", datetime.now(UTC))
    result = CliRunner().invoke(cli, ["policy", "replay", "-c", str(new), "--show", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Replayed {CALLS} calls from ")
    assert f"Would flip: {len(expected)} calls" in lines
    assert f"  allow -> deny: {len(expected)}" in lines
    assert "Calls that would flip (first 3; --format json lists all):" in lines
    assert lines[-3].startswith(f"  #{expected[0]}  ")
    assert lines[-3].endswith("create_payment  allow (no rule) -> deny (large-payments)")


def test_a_bad_window_is_a_usage_error_that_shows_the_format(tmp_path: Path) -> None:
    _, new = _configs(tmp_path)
    result = CliRunner().invoke(cli, ["policy", "replay", "-c", str(new), "--since", "yesterday"])
    assert result.exit_code == 2
    assert "e.g. 30s, 5m, 1h, 90d" in result.output
