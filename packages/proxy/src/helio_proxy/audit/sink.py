"""The audit writer process: a proxy's audit batches, rowed, chained and committed off its interpreter.

With ``audit.writer: process`` (what ``auto`` chooses under ``helio start`` with ``batched``
durability and at least two CPUs per worker: see ``AuditTrail.uses_process``) the proxy's
:class:`~helio_proxy.audit.writer.AuditWriter` keeps its buffer, its batches, its retries and its
health on the event loop, and hands each batch of records to this child process instead of its
own store thread. The child turns the records into rows (redaction, the JSON columns), gives them
their sequence numbers, hash links and signatures, and commits them, each batch one transaction,
on its own connection to the same store.

Why a process: with a writer thread the audit trail cost the event loop about 55 µs per call
(the row built on the loop, and the writer thread holding the interpreter lock the loop needs:
under load the loop waited for it, a tenth of its core); with this process, 25 µs (the record,
which the metrics count, its pickle, the batch's write to the pipe). The process does the rest on another core, where
there is one to spare; see docs/performance.md (the tenth look).

The conversation, over the child's stdin and stdout, is length-prefixed pickles (both ends are
this module, started by the proxy itself; nothing else writes to the pipe):

* parent → child: one :class:`SinkSetup`, then ``(batch_id, records, resend)`` per batch, each
  record's field values pickled on their own (:meth:`ProcessSink.pack`);
* child → parent: ``(batch_id, written, error)`` once the batch committed (``error`` ``None``) or
  its transaction failed (``"Type: message"``; the parent retries it, with ``resend`` set, and the
  child then skips records the store already holds, so a batch whose answer was lost is not
  written twice).

The child ignores SIGINT and SIGTERM (the proxy stops it by closing its stdin, after its last
batch) and ends when its stdin does: when the proxy stops, and when the proxy dies, even by
SIGKILL, after committing every batch it had received. A proxy that crashes (``atexit``, no event
loop left) commits what it still buffers through its own store, as with a writer thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from helio_proxy.audit.chain import existing_ids, load_private_key, stepped, write_job
from helio_proxy.audit.records import AnyRecord
from helio_proxy.audit.rows import RowBuilder, packed_record, unpacked_fields
from helio_proxy.store import create_store
from helio_proxy.store.base import StoreError

log = logging.getLogger("helio.audit")

_LENGTH: Final = struct.Struct(">I")
_CHILD: Final = "import sys; from helio_proxy.audit.sink import main; sys.exit(main())"
"""The child's program (not ``-m``: this module would then be ``__main__`` as well, and the setup
it unpickles an instance of the other copy's class)."""
STOP_TIMEOUT: Final = 10.0
"""How long a stopping proxy waits for the child to commit what it holds before killing it."""
STEP_PAUSE: Final = 0.0005
"""Seconds the child sleeps between the short steps of building a batch of a writer keeping pace
(10 rows each; see :func:`~helio_proxy.audit.chain.short_steps`). Built, chained and inserted at
once, 50 rows are over a millisecond of CPU; on a machine with two CPUs the calls in flight waited
for that burst, wherever it ran (the client, the upstream and the proxy take turns on them).
Spread out, they wait less (docs/performance.md, the twelfth look). A larger batch, a writer
catching up, goes without pauses.

Only the building pauses: the hashing and inserting, done holding the database's write lock, go
without (steps that only let go of the GIL). Paused there too, a batch held the lock for about
8 ms, and a call under a ``rate_limit`` rule that needed it meanwhile waited that out: such a
call's p99 was 8.0-18.9 ms over an unlimited call's, and 3.6-8.6 ms with the lock held only for
the work, less than half in each of five alternated runs (docs/performance.md, the sixteenth look)."""
NICENESS: Final = 5
"""How much the child lowers its own scheduling priority when it starts (``nice +5``, where the
platform has it): on two CPUs, where the client, the upstream and the proxy take turns one call at
a time, a call that needed the CPU the child was on waited less (fewer calls over 2 ms, a lower
median). A weight of a third of a normal process's still keeps pace: 99 % of the records committed
during a ``wrk -c32`` run with two or four CPU-bound processes beside it on two CPUs, where
``nice +10`` kept 45 % with two (docs/performance.md, the twelfth look)."""


@dataclass(frozen=True)
class SinkSetup:
    """What the child needs to write batches as the proxy's own writer would."""

    store_url: str
    rows: RowBuilder
    chained: bool
    signer_pem: bytes | None


def frame(value: object) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def signer_pem(signer: Ed25519PrivateKey | None) -> bytes | None:
    if signer is None:
        return None
    return signer.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class SinkFailed(StoreError):
    """The writer process could not commit a batch; ``str()`` is its own ``"Type: message"``."""


class SinkExited(StoreError):
    """The writer process ended while batches were in it (they are retried on a new one)."""


class ProcessSink:
    """The proxy's end: starts the child, sends batches, resolves each batch's future on its answer.

    The child is a plain :class:`subprocess.Popen` whose pipes the event loop reads and writes, not
    an asyncio subprocess: asyncio kills a subprocess whose transport is closed or collected while it
    runs, which a proxy that crashes does to it at exit, before it had committed what it was given."""

    def __init__(self, setup: SinkSetup) -> None:
        self._setup = setup
        self._process: subprocess.Popen[bytes] | None = None
        self._input: asyncio.WriteTransport | None = None
        self._reader: asyncio.Task[None] | None = None
        self._inflight: dict[int, tuple[subprocess.Popen[bytes], asyncio.Future[int]]] = {}
        """Batches sent and not answered yet, with the process each was sent to."""
        self._next_id = 0
        self._closing = False
        self._starting: set[asyncio.Task[None]] = set()
        self.pid: int | None = None

    def _running(self) -> bool:
        return self._input is not None and not self._input.is_closing() and self._reader is not None

    async def _ensure(self) -> None:
        if self._running():
            return
        if self._closing:
            raise StoreError("the audit writer process is stopping")
        loop = asyncio.get_running_loop()
        argv = [sys.executable, "-c", _CHILD]
        # A Popen on purpose (see the class docstring): it waits for the fork and exec only.
        try:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: ASYNC220
        except OSError as exc:
            raise StoreError(f"cannot start the audit writer process: {exc.strerror or exc}") from None
        assert process.stdin is not None
        assert process.stdout is not None
        answers = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(answers), process.stdout)
        self._input, _ = await loop.connect_write_pipe(asyncio.Protocol, process.stdin)
        self._input.write(frame(self._setup))
        self._process = process
        self.pid = process.pid
        self._reader = asyncio.create_task(self._read(process, answers), name="helio-audit-sink-reader")

    async def start(self) -> None:
        """Start the child (it opens the store while the proxy goes on starting)."""
        await self._ensure()

    @staticmethod
    def pack(record: AnyRecord) -> bytes:
        """A record as it travels to the child (:func:`packed_record`), pickled when it is
        submitted (see ``AuditWriter.submit``)."""
        return pickle.dumps(packed_record(record), protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def unpack(blob: bytes) -> dict[str, Any]:
        """A packed record's field values again (what :meth:`RowBuilder.build_fields` takes)."""
        return unpacked_fields(pickle.loads(blob))  # noqa: S301 - packed by this process

    def send(self, records: Sequence[bytes], *, resend: bool) -> asyncio.Future[int]:
        """Hand one batch to the child; the future gives the rows committed, or the failure."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._next_id += 1
        batch_id = self._next_id
        if self._running():
            self._write(batch_id, list(records), resend, future)
        else:  # not started, or gone: (re)start it first
            task = loop.create_task(self._send_later(batch_id, list(records), resend, future))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
        return future

    def _write(self, batch_id: int, records: list[bytes], resend: bool, future: asyncio.Future[int]) -> None:
        assert self._input is not None
        assert self._process is not None
        self._inflight[batch_id] = (self._process, future)
        self._input.write(frame((batch_id, records, resend)))

    async def _send_later(
        self, batch_id: int, records: list[bytes], resend: bool, future: asyncio.Future[int]
    ) -> None:
        try:
            await self._ensure()
        except Exception as exc:
            if not future.done():
                future.set_exception(
                    exc
                    if isinstance(exc, StoreError)
                    else StoreError(f"cannot start the audit writer: {exc}")
                )
            return
        self._write(batch_id, records, resend, future)

    async def _read(self, process: subprocess.Popen[bytes], answers: asyncio.StreamReader) -> None:
        try:
            while True:
                head = await answers.readexactly(_LENGTH.size)
                (size,) = _LENGTH.unpack(head)
                batch_id, written, error = pickle.loads(await answers.readexactly(size))  # noqa: S301 - our child
                sent = self._inflight.pop(batch_id, None)
                if sent is None or sent[1].done():
                    continue
                future = sent[1]
                if error is None:
                    future.set_result(written)
                else:
                    future.set_exception(SinkFailed(error))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        # Its answers ended: it has exited, or is about to.
        if self._input is not None and self._process is process:
            self._input.close()
        try:
            code = await asyncio.to_thread(process.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            code = await asyncio.to_thread(process.wait)
        if self._process is process:
            self._reader = None
        # Its unanswered batches only: a new process may have been given batches meanwhile.
        lost = [batch for batch, (to, _) in self._inflight.items() if to is process]
        if lost or not self._closing:
            log.error("the audit writer process (pid %s) exited with %s", process.pid, code)
        for batch in lost:
            _, future = self._inflight.pop(batch)
            if not future.done():
                future.set_exception(SinkExited(f"the audit writer process exited with {code}"))

    async def close(self) -> None:
        """End the child's input and wait for it to commit what it holds and exit (killed after
        :data:`STOP_TIMEOUT`)."""
        self._closing = True
        if self._input is not None:
            self._input.close()
        reader = self._reader
        if reader is not None:
            await reader


# -- the child -----------------------------------------------------------------------------------


def _read_frame(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)  # noqa: S301 - our parent


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """Write every batch read from ``stdin`` until it ends; answer each on ``stdout``."""
    setup = _read_frame(stdin)
    if not isinstance(setup, SinkSetup):
        log.error("audit writer process: no setup received")
        return 2
    signer = load_private_key(setup.signer_pem.decode()) if setup.signer_pem is not None else None
    store = create_store(setup.store_url, durability="batched")
    try:
        store.open_sync()
    except StoreError as exc:
        log.error("%s", exc)  # the proxy retries its batches on a new process, then counts them failed
        return 3
    try:
        while (message := _read_frame(stdin)) is not None:
            batch_id, packed, resend = message
            try:
                rows: list[dict[str, Any]] = []
                for blob in stepped(packed, STEP_PAUSE):
                    fields = ProcessSink.unpack(blob)
                    try:
                        rows.append(setup.rows.build_fields(fields, ""))
                    except Exception:
                        log.exception("audit record %s could not be serialized; skipped", fields.get("id"))
                held: set[str] = set()
                if resend and rows:
                    # Committed by a process whose answer was lost: in the store, so counted.
                    held = store.read_sync(existing_ids([row["id"] for row in rows]))
                    rows = [row for row in rows if row["id"] not in held]
                written = store.submit(
                    write_job(rows, chained=setup.chained, signer=signer, step_pause=0.0)  # see STEP_PAUSE
                ).result()
                answer = (batch_id, written + len(held), None)
            except Exception as exc:
                answer = (batch_id, 0, f"{type(exc).__name__}: {exc}")
            stdout.write(frame(answer))
            stdout.flush()
    finally:
        store.close_sync()
    return 0


def main() -> int:
    if hasattr(os, "nice"):
        os.nice(NICENESS)  # before the store's thread starts: Linux sets a thread's own priority
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from helio_proxy.hardening import forbid_inspection

    forbid_inspection()  # records hold secrets before redaction, and the signing key is here
    logging.basicConfig(level=logging.WARNING, format="[audit writer] %(levelname)s: %(message)s")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers goes to the parent's pipe
    return serve(stdin, stdout)
