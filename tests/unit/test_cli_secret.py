"""``helio secret``: a fresh secret and its ``sha256:<hex>`` hash, or the hash of one from stdin."""

from __future__ import annotations

import hashlib
import json
import re

from click.testing import CliRunner

from helio_proxy.cli import cli

HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def _lines(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.splitlines())


def test_helio_secret_prints_a_fresh_256_bit_secret_and_its_sha256_hash_on_two_labelled_lines() -> None:
    first = CliRunner().invoke(cli, ["secret"])
    second = CliRunner().invoke(cli, ["secret"])
    assert first.exit_code == 0, first.output
    printed = _lines(first.stdout)
    assert list(printed) == ["secret", "hash"]
    assert len(printed["secret"]) >= 43  # 32 random bytes, URL-safe base64
    assert re.fullmatch(r"[A-Za-z0-9_-]+", printed["secret"])
    assert HASH.match(printed["hash"])
    assert printed["hash"] == "sha256:" + hashlib.sha256(printed["secret"].encode()).hexdigest()
    assert _lines(second.stdout)["secret"] != printed["secret"]


def test_helio_secret_json_prints_the_same_two_fields_as_one_object() -> None:
    result = CliRunner().invoke(cli, ["secret", "--json"])
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert set(printed) == {"secret", "hash"}
    assert printed["hash"] == "sha256:" + hashlib.sha256(printed["secret"].encode()).hexdigest()


def test_helio_secret_hash_hashes_the_secret_on_stdin_without_its_line_break() -> None:
    result = CliRunner().invoke(cli, ["secret", "--hash"], input="correct horse\n")
    as_json = CliRunner().invoke(cli, ["secret", "--hash", "--json"], input="correct horse")
    expected = "sha256:" + hashlib.sha256(b"correct horse").hexdigest()
    assert result.exit_code == 0
    assert result.stdout == f"hash: {expected}\n"
    assert json.loads(as_json.stdout) == {"hash": expected}


def test_helio_secret_never_takes_the_secret_from_the_command_line_and_empty_stdin_is_bad_usage() -> None:
    on_argv = CliRunner().invoke(cli, ["secret", "--hash", "correct horse"])
    empty = CliRunner().invoke(cli, ["secret", "--hash"], input="")
    assert on_argv.exit_code == 2
    assert empty.exit_code == 2
    assert "no secret on stdin" in empty.stderr
