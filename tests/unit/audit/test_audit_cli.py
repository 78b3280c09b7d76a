import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from helio_proxy.audit.chain import append_rows, load_private_key
from helio_proxy.audit.records import ToolCallRecord
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder
from helio_proxy.cli import cli
from helio_proxy.config import parse_config_text
from helio_proxy.errors import ConfigError
from helio_proxy.store import Store, create_store

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "helio.yaml"
    path.write_text(
        "version: '1'\n"
        "upstream:\n  url: 'http://127.0.0.1:9/mcp'\n"
        f"audit:\n  path: '{tmp_path / 'audit.db'}'\n{extra}"
        "dashboard:\n  enabled: false\n"
    )
    return path


def _seed(tmp_path: Path, count: int, signing_key: Path | None = None) -> list[str]:
    store: Store = create_store(f"sqlite:///{tmp_path / 'audit.db'}")
    store.open_sync()
    try:
        builder = RowBuilder(Redactor())
        records = [
            ToolCallRecord(
                timestamp=T0 + timedelta(minutes=i),
                tool_name="delete_user" if i % 3 == 0 else "get_weather",
                tool_input={"n": i, "note": "=HYPERLINK(1)"},
                policy_decision="deny" if i % 3 == 0 else "allow",
                block_reason="policy_denied" if i % 3 == 0 else None,
                session_id=f"s{i % 2}",
            )
            for i in range(count)
        ]
        rows = [builder.build(r, "c") for r in records]
        signer = load_private_key(str(signing_key)) if signing_key else None
        store.submit(lambda c: append_rows(c, rows, signer=signer)).result(timeout=10)
    finally:
        store.close_sync()
    return [str(r.id) for r in records]


def _tamper(tmp_path: Path, record_id: str) -> None:
    store = create_store(f"sqlite:///{tmp_path / 'audit.db'}")
    store.open_sync()
    try:
        store.submit(
            lambda c: c.execute(
                text("UPDATE audit_records SET tool_name = 'get_weathes' WHERE id = :id"), {"id": record_id}
            )
        ).result(timeout=10)
    finally:
        store.close_sync()


def test_export_writes_csv_with_every_column_and_the_objects(tmp_path: Path) -> None:
    ids = _seed(tmp_path, 6)
    result = CliRunner().invoke(cli, ["export", "-c", str(_config(tmp_path)), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert [r["id"] for r in rows] == ids  # oldest first
    assert json.loads(rows[0]["tool_input"]) == {"n": 0, "note": "=HYPERLINK(1)"}
    assert rows[0]["hash"]
    assert rows[0]["prev_hash"] == "0" * 64


def test_export_filters_and_limits(tmp_path: Path) -> None:
    ids = _seed(tmp_path, 9)
    config = str(_config(tmp_path))
    runner = CliRunner()
    denied = runner.invoke(
        cli, ["export", "-c", config, "--format", "json", "--decision", "deny", "--limit", "2"]
    )
    assert denied.exit_code == 0, denied.output
    assert [r["id"] for r in json.loads(denied.stdout)] == [ids[3], ids[6]]
    window = runner.invoke(
        cli,
        [
            "export",
            "-c",
            config,
            "--format",
            "json",
            "--tool",
            "weather",
            "--session",
            "s1",
            "--from",
            "2026-05-01T00:02:00",
            "--to",
            "2026-05-01T00:08:00",
        ],
    )
    assert [r["id"] for r in json.loads(window.stdout)] == [ids[5], ids[7]]
    reason = runner.invoke(cli, ["export", "-c", config, "--format", "json", "--reason", "policy_denied"])
    assert len(json.loads(reason.stdout)) == 3
    too_many = runner.invoke(cli, ["export", "-c", config, "--limit", "10001"])
    assert too_many.exit_code == 2


def test_export_to_a_file_is_private(tmp_path: Path) -> None:
    _seed(tmp_path, 2)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(cli, ["export", "-c", str(_config(tmp_path)), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert len(out.read_text().splitlines()) == 3


def test_export_without_a_database_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["export", "-c", str(_config(tmp_path))])
    assert result.exit_code != 0
    assert "no audit database" in result.output
    assert not (tmp_path / "audit.db").exists()


def test_verify_counts_an_intact_chain_and_names_the_edited_record(tmp_path: Path) -> None:
    ids = _seed(tmp_path, 5)
    config = str(_config(tmp_path))
    ok = CliRunner().invoke(cli, ["audit", "verify", "-c", config])
    assert ok.exit_code == 0
    assert "5 records verified" in ok.stdout
    _tamper(tmp_path, ids[3])
    broken = CliRunner().invoke(cli, ["audit", "verify", "-c", config])
    assert broken.exit_code == 1
    assert ids[3] in broken.output
    assert "altered" in broken.output


def test_verify_checks_signatures_with_the_configured_key(tmp_path: Path) -> None:
    key_path = tmp_path / "signing.pem"
    key = Ed25519PrivateKey.generate()
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    _seed(tmp_path, 3, signing_key=key_path)
    config = _config(tmp_path, f"  signing_key: '{key_path}'\n")
    result = CliRunner().invoke(cli, ["audit", "verify", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "3 signatures valid" in result.stdout
    public = tmp_path / "public.pem"
    public.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    wrong = CliRunner().invoke(cli, ["audit", "verify", "-c", str(config), "--public-key", str(public)])
    assert wrong.exit_code == 1
    assert "bad_signature" in wrong.output


def test_the_audit_config_accepts_the_new_keys() -> None:
    config = parse_config_text(
        "version: '1'\nupstream: {url: 'http://u/mcp'}\ndashboard: {enabled: false}\n"
        "audit: {durability: strict, hash_chain: true, redact: ['ssn'], signing_key: '/k.pem'}\n"
        "store: {url: 'postgresql://helio@db/helio'}\n"
    )
    assert config.audit.durability == "strict"
    assert config.audit.redact == ["ssn"]
    assert config.store.url == "postgresql://helio@db/helio"


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("audit: {durability: eventually}", "durability"),
        ("audit: {redact: ['(unclosed']}", "not a valid regular expression"),
        ("store: {url: 'not a url'}", "not a URL"),
        ("store: {uri: 'postgresql://x'}", "unknown key 'uri'"),
    ],
)
def test_invalid_audit_and_store_settings_are_config_errors(snippet: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config_text(
            f"version: '1'\nupstream: {{url: 'http://u/mcp'}}\ndashboard: {{enabled: false}}\n{snippet}\n"
        )


def test_export_over_a_world_readable_file_leaves_it_mode_0600(tmp_path: Path) -> None:
    """Issue 22 point 10: -o (now with -f) over an existing 0644 file kept its mode."""
    _seed(tmp_path, 2)
    out = tmp_path / "out.csv"
    out.write_text("old export\n")
    out.chmod(0o644)
    result = CliRunner().invoke(cli, ["export", "-c", str(_config(tmp_path)), "-o", str(out), "-f"])
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert len(out.read_text().splitlines()) == 3
    assert "old export" not in out.read_text()


def test_export_refuses_to_overwrite_an_existing_file_without_force_like_init(tmp_path: Path) -> None:
    _seed(tmp_path, 2)
    config = str(_config(tmp_path))
    out = tmp_path / "out.csv"
    out.write_text("keep me")
    refused = CliRunner().invoke(cli, ["export", "-c", config, "-o", str(out)])
    assert refused.exit_code == 1
    assert f"{out} already exists; use -f (--force) to overwrite it" in refused.stderr
    assert out.read_text() == "keep me"
    forced = CliRunner().invoke(cli, ["export", "-c", config, "-o", str(out), "-f"])
    assert forced.exit_code == 0, forced.output
    assert len(out.read_text().splitlines()) == 3


def test_export_format_has_no_short_flag_and_the_old_dash_f_csv_is_bad_usage_that_says_why(
    tmp_path: Path,
) -> None:
    _seed(tmp_path, 1)
    old = CliRunner().invoke(cli, ["export", "-c", str(_config(tmp_path)), "-f", "csv"])
    assert old.exit_code == 2
    assert "-f now means --force" in old.stderr
    assert "--format" in old.stderr
