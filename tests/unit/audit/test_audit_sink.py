"""The audit writer process (:mod:`helio_proxy.audit.sink`): the child's loop, run in this process
on in-memory pipes, and an :class:`AuditWriter` writing through a real child."""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from helio_proxy.audit import sink
from helio_proxy.audit.records import (
    AnyRecord,
    ApprovalResolutionRecord,
    DriftEventRecord,
    KillSwitchRecord,
    PolicyReloadRecord,
    ToolCallRecord,
)
from helio_proxy.audit.redact import Redactor
from helio_proxy.audit.rows import RowBuilder, decode_row
from helio_proxy.audit.sink import ProcessSink, SinkSetup, frame, serve, signer_pem
from helio_proxy.audit.trail import AuditTrail
from helio_proxy.audit.verify import verify_chain
from helio_proxy.audit.writer import AuditWriter
from helio_proxy.config import load_config
from helio_proxy.store import Store, StoreError, create_store
from helio_proxy.store.base import time_text
from helio_proxy.store.testing import Backend, store_url_for

START = datetime(2026, 3, 1, tzinfo=UTC)


def _record(i: int, **fields: Any) -> ToolCallRecord:
    return ToolCallRecord(timestamp=START, tool_name=f"tool_{i}", **({"tool_input": {"i": i}} | fields))


@pytest.fixture
def url_and_store(backend: Backend, tmp_path: Path) -> Iterator[tuple[str, Store]]:
    with store_url_for(backend, tmp_path) as url:
        store = create_store(url)
        store.open_sync()
        try:
            yield url, store
        finally:
            store.close_sync()


def _rows(store: Store) -> list[dict[str, Any]]:
    query = text("SELECT * FROM audit_records ORDER BY seq")
    return [decode_row(row._mapping) for row in store.read_sync(lambda c: c.execute(query).all())]


def _answers(out: bytes) -> list[tuple[int, int, str | None]]:
    stream, answers = io.BytesIO(out), []
    while head := stream.read(4):
        answers.append(pickle.loads(stream.read(int.from_bytes(head, "big"))))  # noqa: S301
    return answers


def _serve(
    setup: SinkSetup, *batches: tuple[int, list[ToolCallRecord], bool]
) -> list[tuple[int, int, str | None]]:
    stdin = io.BytesIO(
        frame(setup)
        + b"".join(
            frame((n, [ProcessSink.pack(r) for r in records], resend)) for n, records, resend in batches
        )
    )
    stdout = io.BytesIO()
    assert serve(stdin, stdout) == 0
    return _answers(stdout.getvalue())


def test_the_child_commits_each_batch_chained_and_answers_it_in_order(
    url_and_store: tuple[str, Store],
) -> None:
    url, store = url_and_store
    setup = SinkSetup(url, RowBuilder(Redactor()), chained=True, signer_pem=None)
    answers = _serve(setup, (1, [_record(0), _record(1), _record(2)], False), (2, [_record(3)], False))
    assert answers == [(1, 3, None), (2, 1, None)]
    rows = _rows(store)
    assert [row["tool_name"] for row in rows] == ["tool_0", "tool_1", "tool_2", "tool_3"]
    assert [row["seq"] for row in rows] == [1, 2, 3, 4]
    assert len({row["created_at"] for row in rows}) == 2  # one transaction per batch
    assert verify_chain(store).ok


@pytest.mark.parametrize(("count", "pauses"), [(50, 4), (7, 0), (120, 0)])
def test_the_child_paces_a_usual_batch_and_writes_a_backlog_at_once(
    url_and_store: tuple[str, Store],
    monkeypatch: pytest.MonkeyPatch,
    count: int,
    pauses: int,
) -> None:
    """A batch of up to 50 records is built in steps of 10 with a pause between: on two CPUs the
    calls in flight waited out the whole burst. It is hashed and inserted holding the write lock,
    without pauses (a limit check waiting for the lock waited them out too). A larger batch, a
    writer catching up, goes without."""
    url, store = url_and_store
    slept: list[tuple[str, float]] = []
    monkeypatch.setattr(  # the module the child's steps sleep through
        time, "sleep", lambda seconds: slept.append((threading.current_thread().name, seconds))
    )
    setup = SinkSetup(url, RowBuilder(Redactor()), chained=True, signer_pem=None)
    assert _serve(setup, (1, [_record(i) for i in range(count)], False)) == [(1, count, None)]
    assert [pause for _, pause in slept if pause] == [sink.STEP_PAUSE] * pauses
    assert all(thread == threading.main_thread().name for thread, pause in slept if pause)
    assert sink.STEP_PAUSE > 0
    assert [row["seq"] for row in _rows(store)] == list(range(1, count + 1))
    assert verify_chain(store).ok


def test_the_child_redacts_with_the_proxys_rules_and_signs_with_its_key(
    url_and_store: tuple[str, Store],
) -> None:
    url, store = url_and_store
    key = Ed25519PrivateKey.generate()
    rows = RowBuilder(Redactor(["^customer_ref$"]), include_responses=False)
    setup = SinkSetup(url, rows, chained=True, signer_pem=signer_pem(key))
    record = _record(
        0,
        tool_input={"customer_ref": "C-991", "password": "hunter2", "n": 1},
        upstream_response={"jsonrpc": "2.0", "id": 1, "result": {"content": []}},
        success=True,
    )
    assert _serve(setup, (1, [record], False)) == [(1, 1, None)]
    (row,) = _rows(store)
    assert row["tool_input"] == {"customer_ref": "[REDACTED]", "password": "[REDACTED]", "n": 1}
    assert row["upstream_response"] != record.upstream_response  # a summary: include_responses off
    report = verify_chain(store, key.public_key())
    assert report.ok
    assert report.signed == 1
    assert row["id"] == str(record.id)
    assert row["timestamp"].startswith("2026-03-01")


def test_a_resent_batch_skips_the_records_the_store_already_holds(url_and_store: tuple[str, Store]) -> None:
    """The parent resends a batch whose answer it never got; the child may have committed it."""
    url, store = url_and_store
    setup = SinkSetup(url, RowBuilder(Redactor()), chained=True, signer_pem=None)
    first, second, third = _record(0), _record(1), _record(2)
    assert _serve(setup, (1, [first, second], False)) == [(1, 2, None)]
    assert _serve(setup, (2, [first, second, third], True)) == [(2, 3, None)]  # all three are stored
    assert [row["tool_name"] for row in _rows(store)] == ["tool_0", "tool_1", "tool_2"]
    assert verify_chain(store).ok


def test_a_batch_that_cannot_be_committed_is_answered_with_why_and_the_next_one_is_written(
    url_and_store: tuple[str, Store],
) -> None:
    url, store = url_and_store
    setup = SinkSetup(url, RowBuilder(Redactor()), chained=True, signer_pem=None)
    twin = _record(0)
    answers = _serve(setup, (1, [twin, twin], False), (2, [_record(1)], False))
    assert answers[0][:2] == (1, 0)
    assert answers[0][2] is not None
    assert "IntegrityError" in answers[0][2]
    assert answers[1] == (2, 1, None)
    assert [row["tool_name"] for row in _rows(store)] == ["tool_1"]
    assert verify_chain(store).ok


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 5, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2026, 12, 5, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2026, 12, 31, 23, 59, 59, 999999),  # naive: taken as UTC
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    ],
)
def test_a_packed_record_becomes_the_row_the_loop_would_have_built(moment: datetime) -> None:
    rows = RowBuilder(Redactor())
    record = ToolCallRecord(
        timestamp=moment, tool_name="tool_7", tool_input={"i": 7}, metadata={"upstream": "u"}
    )
    packed = ProcessSink.pack(record)
    assert str(record.id) not in packed.decode("latin-1")  # the id travels as its integer
    assert rows.build_fields(ProcessSink.unpack(packed), "") == rows.build(record, "")
    assert ProcessSink.unpack(packed)["timestamp"] == time_text(moment)


@pytest.mark.parametrize(
    "record",
    [
        DriftEventRecord(timestamp=START, tool_name="t", policy_decision="tool_drift", metadata={"a": [1]}),
        PolicyReloadRecord(timestamp=START, outcome="rejected", error="bad yaml"),
        ApprovalResolutionRecord(timestamp=START, ticket_id="tk", approval_status="approved", tool_name="t"),
        KillSwitchRecord(timestamp=START, engaged=True, actor="ops"),
        ToolCallRecord(
            timestamp=START,
            tool_name="refund",
            tool_input={"amount": 5},
            success=False,
            upstream_error={"failure_class": "timeout"},
            evidence_chain={"gate": {"x": 1}},
        ),
    ],
    ids=lambda record: record.record_kind,
)
def test_every_kind_of_record_packs_into_the_row_the_loop_would_have_built(record: AnyRecord) -> None:
    rows = RowBuilder(Redactor())
    assert rows.build_fields(ProcessSink.unpack(ProcessSink.pack(record)), "") == rows.build(record, "")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_record_that_cannot_be_pickled_is_skipped_and_logged(
    url_and_store: tuple[str, Store], caplog: pytest.LogCaptureFixture
) -> None:
    url, store = url_and_store
    writer = AuditWriter(
        store, RowBuilder(Redactor()), sink=ProcessSink(SinkSetup(url, RowBuilder(Redactor()), True, None))
    )
    writer.start()
    assert writer.submit(_record(0, metadata={"callback": lambda: None})) is None
    assert writer.pending() == 0
    assert "could not be serialized; skipped" in caplog.text
    await writer.close()  # nothing was sent: no process was needed


async def test_a_writer_process_that_cannot_be_started_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    sink = ProcessSink(SinkSetup(f"sqlite:///{tmp_path / 'a.db'}", RowBuilder(Redactor()), True, None))
    with pytest.raises(StoreError, match="cannot start the audit writer process"):
        await sink.start()


def _process_writer(url: str, **options: Any) -> AuditWriter:
    rows = RowBuilder(Redactor())
    store = create_store(url)
    store.open_sync()
    sink = ProcessSink(SinkSetup(url, rows, chained=True, signer_pem=None))
    return AuditWriter(store, rows, sink=sink, **options)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_writer_with_a_process_commits_every_record_and_the_process_ends_with_it(
    url_and_store: tuple[str, Store],
) -> None:
    url, store = url_and_store
    writer = _process_writer(url)
    assert writer.sink is not None
    await writer.sink.start()
    writer.start()
    for i in range(120):
        writer.submit(_record(i))
    await writer.close()
    writer.store.close_sync()
    assert writer.stats.written == 120
    assert writer.stats.failed == 0
    assert writer.failure is None
    rows = _rows(store)
    assert sorted(row["tool_name"] for row in rows) == sorted(f"tool_{i}" for i in range(120))
    assert verify_chain(store).ok
    pid = writer.sink.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited, and reaped


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_killed_writer_process_is_replaced_and_its_batch_written_once(
    url_and_store: tuple[str, Store], caplog: pytest.LogCaptureFixture
) -> None:
    url, store = url_and_store
    writer = _process_writer(url)
    sink = writer.sink
    assert sink is not None
    await sink.start()
    writer.start()
    for i in range(50):  # a full batch: sent at once
        writer.submit(_record(i))
    first = sink.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # still starting: the batch is in its pipe, not in the store
    await writer.flush()  # retried on a new process, as a resend
    for i in range(50, 60):
        writer.submit(_record(i))
    await writer.close()
    writer.store.close_sync()
    assert sink.pid not in (None, first)
    assert writer.stats.written == 60
    assert writer.stats.failed == 0
    assert writer.failure is None
    names = [row["tool_name"] for row in _rows(store)]
    assert sorted(names) == sorted(f"tool_{i}" for i in range(60))
    assert verify_chain(store).ok
    assert "the audit writer process" in caplog.text
    assert "exited with" in caplog.text


@pytest.mark.parametrize(
    ("writer", "durability", "own_process", "workers", "cpus", "expected"),
    [
        ("auto", "batched", True, 1, 4, True),
        ("auto", "batched", True, 1, 2, True),  # the benchmark VM, one worker: a process
        ("auto", "batched", True, 1, 1, False),
        ("auto", "batched", True, 2, 2, False),  # the benchmark VM, two workers: threads
        ("auto", "batched", True, 2, 3, False),
        ("auto", "batched", True, 2, 4, True),
        ("auto", "batched", False, 1, 8, False),  # embedded in another program
        ("auto", "strict", True, 1, 8, False),
        ("thread", "batched", True, 1, 8, False),
        ("process", "batched", False, 1, 1, True),
    ],
)
def test_which_writer_a_trail_uses(
    tmp_path: Path, writer: str, durability: str, own_process: bool, workers: int, cpus: int, expected: bool
) -> None:
    config = tmp_path / "helio.yaml"
    config.write_text(
        "version: '1'\nupstream: {url: 'http://127.0.0.1:9/mcp'}\ndashboard: {enabled: false}\n"
        f"audit: {{path: '{tmp_path / 'a.db'}', durability: {durability}, writer: {writer}}}\n"
    )
    assert AuditTrail(load_config(str(config))).uses_process(own_process, workers, cpus) is expected


def test_the_writer_process_ignores_the_terminals_signals_and_ends_with_its_input(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group; the child must outlive it until its input ends."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = create_store(url)
    store.open_sync()
    store.close_sync()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from helio_proxy.audit.sink import main; sys.exit(main())"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write(frame(SinkSetup(url, RowBuilder(Redactor()), True, None)))
    child.stdin.write(frame((1, [ProcessSink.pack(_record(0))], False)))
    child.stdin.flush()
    head = child.stdout.read(4)
    assert pickle.loads(child.stdout.read(int.from_bytes(head, "big"))) == (1, 1, None)  # noqa: S301
    # It runs at a lower priority than the proxy (the calls in flight get the CPU first), its
    # store thread too.
    niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + sink.NICENESS)
    threads = os.listdir(f"/proc/{child.pid}/task")
    assert len(threads) >= 2
    for thread in threads:
        assert os.getpriority(os.PRIO_PROCESS, int(thread)) == niceness
    child.send_signal(signal.SIGINT)
    child.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert child.poll() is None
    child.stdin.close()
    assert child.wait(timeout=30) == 0
    child.stdout.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_store_the_writer_process_cannot_write_is_reported_retried_and_recovered(
    url_and_store: tuple[str, Store],
) -> None:
    """The child's failed commit reaches the proxy's health (``/healthz``'s audit_unavailable) with
    the store's own reason; the batch is retried and commits once the store takes writes again."""
    url, store = url_and_store
    refuse = (
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'disk is full'); END"
    )
    store.submit(lambda c: c.exec_driver_sql(refuse)).result()
    writer = _process_writer(url, retry_delays=(0.5, 1.0, 5.0))
    assert writer.sink is not None
    await writer.sink.start()
    writer.start()
    for i in range(50):  # a full batch: sent at once
        writer.submit(_record(i))
    async with asyncio.timeout(30):
        while writer.failure is None:  # noqa: ASYNC110 - the child's answer arrives on this loop
            await asyncio.sleep(0.02)
    assert writer.failure == "IntegrityError: disk is full"  # as a writer thread reports it
    store.submit(lambda c: c.exec_driver_sql("DROP TRIGGER refuse")).result()
    await writer.flush()
    assert writer.failure is None
    assert writer.stats.written == 50
    assert writer.stats.failed == 0
    await writer.close()
    writer.store.close_sync()
    assert len(_rows(store)) == 50
    assert verify_chain(store).ok
