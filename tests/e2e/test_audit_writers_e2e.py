"""One audit trail from several writers: three processes append to one PostgreSQL store at once
(as three replicas do); ``helio audit verify`` checks the whole chain and ``helio export`` gives one
trail ordered by ``seq`` with every record exactly once (docs/audit.md, "Several proxies")."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from helio_proxy.cli import cli
from helio_proxy.store.testing import postgres_schema

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 3
RECORDS = 200


def test_three_concurrent_writers_keep_one_chain_that_verifies_and_exports_in_order(tmp_path: Path) -> None:
    with postgres_schema() as url:
        config = tmp_path / "helio.yaml"
        config.write_text(
            f"version: '1'\nupstream:\n  url: 'http://127.0.0.1:9/mcp'\nstore:\n  url: '{url}'\n"
            "dashboard:\n  enabled: false\n"
        )
        start_at = f"{time.time() + 2:.3f}"  # after every writer has opened its store
        writers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.e2e.audit_writer_process",
                    url,
                    str(n),
                    str(RECORDS),
                    start_at,
                    "strict" if n == 0 else "batched",
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for n in range(WRITERS)
        ]
        for writer in writers:
            output, _ = writer.communicate(timeout=90)
            assert writer.returncode == 0, output
        # The real commands, in this process (two more interpreters would only add start-up time).
        verify = CliRunner().invoke(cli, ["audit", "verify", "-c", str(config)])
        export = CliRunner().invoke(
            cli, ["export", "-c", str(config), "--format", "json", "--limit", "10000"]
        )
    assert verify.exit_code == 0, verify.output
    assert f"{WRITERS * RECORDS} records verified" in verify.stdout
    assert export.exit_code == 0, export.output
    records = json.loads(export.stdout)
    assert [r["seq"] for r in records] == list(range(1, WRITERS * RECORDS + 1))
    assert all(r["prev_hash"] == p["hash"] for p, r in itertools.pairwise(records))
    written = [(r["metadata"]["writer"], r["metadata"]["i"]) for r in records]
    assert sorted(written) == [(w, i) for w in range(WRITERS) for i in range(RECORDS)]  # each once
    for w in range(WRITERS):  # each writer's records keep its order along the chain
        assert [i for writer, i in written if writer == w] == list(range(RECORDS))
    # The writers overlapped: the chain interleaves them rather than holding three runs.
    switches = sum(1 for a, b in itertools.pairwise(written) if a[0] != b[0])
    assert switches > WRITERS
