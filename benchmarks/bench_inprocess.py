"""CPU per call of Helio's MCP endpoint and of the bare forwarder, driven in one process.

`bench_compare.py` measures what a client sees; on a shared 2-vCPU machine its calls/s move by
±30 % from one run to the next (wrk, the upstream and the proxy share two cores with whatever else
runs). This script takes the HTTP server and the client out of the measurement: it calls the two
ASGI apps directly (the bare forwarder of `bench_compare.py` and a started `HelioApp` with the
same 20-rule config, batched audit on SQLite), `--concurrency` calls in flight, against the same
raw JSON-RPC upstream in a child process, and reads the CPU time the process and its event-loop
thread spent per call. Both apps run in turn in each round, in the same process.

Each call's time to reply (from the app being called to the reply's last body event) is kept
too; its median is what the call's client waits for, the upstream's round trip included. With
`--gap-ms`, each call in flight waits that long (the loop idle, as between a client's calls)
before its next: `--concurrency 1 --gap-ms 0.5` is the c=1 latency run of `bench_compare.py`
without the HTTP server and the client's own work.

With `--audit-parts`, Helio is also run with part of its audit trail switched off by replacing
private methods for the duration of that row (a diagnostic, not a setting):

* `no record`: no audit record is built or written (`CallAudit._write` does nothing);
* `row, no writer`: the record and its row are built on the loop, then dropped (nothing reaches
  the store's writer thread).

`--writer process` runs Helio with `audit.writer: process`, as `helio start` does by default: the
rows are built and committed by a child process, whose CPU the figures leave out (they are this
process's); `--writer thread` (default) is what an app embedded in another program gets.

    uv run python benchmarks/bench_inprocess.py [--calls 10000] [--concurrency 32] [--rounds 3]
        [--gap-ms 0] [--audit-parts] [--writer thread|process]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

import bench_compare as bc

ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
BODY = json.dumps(bc.CALL).encode()


def scope_for(headers: dict[str, str]) -> dict[str, Any]:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"host", b"127.0.0.1"), (b"content-length", str(len(BODY)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def drive(
    app: ASGI, headers: dict[str, str], calls: int, concurrency: int, gap: float = 0.0
) -> dict[str, float]:
    """``calls`` POSTs of the benchmark's ``tools/call``, ``concurrency`` at a time (``gap``:
    seconds each waits before its next call)."""
    base = scope_for(headers)
    started = 0
    errors = 0
    replies: list[float] = []

    async def one() -> None:
        nonlocal errors
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": BODY, "more_body": False}
            await asyncio.Event().wait()  # the client never goes away
            raise AssertionError("unreachable")

        events: list[dict[str, Any]] = []
        called = time.perf_counter()

        async def send(event: dict[str, Any]) -> None:
            events.append(event)
            if event.get("type") == "http.response.body" and not event.get("more_body"):
                replies.append(time.perf_counter() - called)

        await app({**base, "headers": list(base["headers"])}, receive, send)
        body = b"".join(e.get("body", b"") for e in events[1:])
        if not events or events[0].get("status") != 200 or b'"result"' not in body:
            errors += 1

    async def worker() -> None:
        nonlocal started
        while started < calls:
            started += 1
            await one()
            if gap:
                await asyncio.sleep(gap)

    process, thread, wall = time.process_time(), time.thread_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    process, thread = time.process_time() - process, time.thread_time() - thread
    wall = time.perf_counter() - wall
    return {
        "process_us": process / calls * 1e6,
        "loop_us": thread / calls * 1e6,
        "calls_s": calls / wall,
        "reply_us": median(replies) * 1e6 if replies else float("nan"),
        "errors": errors,
    }


@contextmanager
def audit_part(name: str) -> Iterator[None]:
    """Switch part of the audit trail off for one row (see the module's docstring)."""
    from helio_proxy.audit import recorder, writer

    saved = (recorder.CallAudit._write, writer.AuditWriter.submit)  # pyright: ignore[reportPrivateUsage]
    if name == "no record":
        recorder.CallAudit._write = lambda self: None  # type: ignore[method-assign]  # pyright: ignore[reportPrivateUsage]
    elif name == "row, no writer":

        def built_only(self: writer.AuditWriter, record: Any) -> None:
            self.rows.build(record, "")

        writer.AuditWriter.submit = built_only  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        recorder.CallAudit._write, writer.AuditWriter.submit = saved  # type: ignore[method-assign]  # pyright: ignore[reportPrivateUsage]


async def run(args: argparse.Namespace, upstream: str, workdir: Path) -> list[tuple[str, dict[str, float]]]:
    from helio_proxy.app import HelioApp
    from helio_proxy.config.loader import load_config

    loaded = load_config(str(bc.helio_config(upstream, bc.free_port(), workdir, args.writer)))
    helio = HelioApp(loaded, hot_reload=False, require_console=False)
    await helio.start()
    bare = bc.forwarder_app(upstream)
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await lifespan.put({"type": "lifespan.startup"})

    async def ignore(_: dict[str, Any]) -> None:
        return None

    bare_life = asyncio.ensure_future(bare({"type": "lifespan"}, lifespan.get, ignore))
    try:
        headers = await bc.handshake(f"http://127.0.0.1:{loaded.config.listen.port}/mcp")
        gc.collect()
        gc.freeze()  # as helio start does once it serves
        targets: list[tuple[str, str]] = [("bare ASGI forwarder", ""), ("Helio", "")]
        if args.audit_parts:
            targets += [("Helio, no record", "no record"), ("Helio, row, no writer", "row, no writer")]
        rows: list[tuple[str, dict[str, float]]] = []
        gap = args.gap_ms / 1000
        await drive(helio.mcp_app, headers, 500, args.concurrency, gap)  # warm both
        await drive(bare, headers, 500, args.concurrency, gap)
        for _ in range(args.rounds):
            for label, part in targets:
                app = bare if label.startswith("bare") else helio.mcp_app
                with audit_part(part):
                    measured = await drive(app, headers, args.calls, args.concurrency, gap)
                rows.append((label, measured))
                print(
                    f"  {label:24s} process {measured['process_us']:6.1f} µs/call, "
                    f"loop thread {measured['loop_us']:6.1f}, {measured['calls_s']:7.0f} calls/s, "
                    f"reply {measured['reply_us']:6.0f} µs",
                    file=sys.stderr,
                    flush=True,
                )
        return rows
    finally:
        await lifespan.put({"type": "lifespan.shutdown"})
        await bare_life
        await helio.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=10_000, help="calls per target per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--writer",
        choices=["thread", "process"],
        default="thread",
        help="Helio's audit.writer (an app embedded here defaults to a thread; helio start to a process)",
    )
    parser.add_argument(
        "--gap-ms", type=float, default=0.0, help="each call in flight waits this long before its next"
    )
    parser.add_argument(
        "--audit-parts", action="store_true", help="also run Helio with parts of its audit off"
    )
    args = parser.parse_args()
    import uvloop

    port = bc.free_port()
    child = subprocess.Popen(
        [sys.executable, str(Path(bc.__file__)), "upstream", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        bc.wait_port(port, child, 30)
        with tempfile.TemporaryDirectory(prefix="helio-inprocess-") as workdir:
            rows = uvloop.run(run(args, f"http://127.0.0.1:{port}/mcp", Path(workdir)))
    finally:
        child.terminate()
        child.wait(10)
    labels = list(dict.fromkeys(label for label, _ in rows))
    bare = median([m["loop_us"] for label, m in rows if label == labels[0]])
    spaced = f", {args.gap_ms:g} ms between a caller's calls" if args.gap_ms else ""
    print(f"\n{args.calls} calls x {args.rounds} rounds, {args.concurrency} in flight{spaced} (medians)\n")
    print(
        "| target | process µs/call | loop thread µs/call | loop thread vs bare | calls/s | reply µs | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label in labels:
        mine = [m for name, m in rows if name == label]
        loop = median([m["loop_us"] for m in mine])
        print(
            f"| {label} | {median([m['process_us'] for m in mine]):.0f} | {loop:.0f} | {loop / bare:.2f} "
            f"| {median([m['calls_s'] for m in mine]):.0f} | {median([m['reply_us'] for m in mine]):.0f} "
            f"| {sum(int(m['errors']) for m in mine)} |"
        )


if __name__ == "__main__":
    main()
