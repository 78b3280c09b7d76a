"""What every fuzz test shares: the input budget, the per-surface tally, an in-process ASGI
driver with a hang bound, the crash detector (error logs) and the memory reading.

The budget is ``HELIO_FUZZ_INPUTS`` inputs per surface (default :data:`DEFAULT_INPUTS`, what the
default suite runs; ``nox -s fuzz`` sets 100,000). The tally is printed at the end of the pytest
run, one line per surface (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from hypothesis import HealthCheck, Phase, settings

DEFAULT_INPUTS: Final = 5_000
"""Inputs per surface in the default suite."""

HANG_SECONDS: Final = 5.0
"""A request not answered within this is a hang (a failure)."""

TALLY: Final[Counter[str]] = Counter()
"""Inputs tried per surface in this pytest run."""

PEAK_RSS: Final[dict[str, int]] = {}
"""The process's peak RSS (bytes) after each surface's run."""


def inputs() -> int:
    """The budget: inputs per surface."""
    return int(os.environ.get("HELIO_FUZZ_INPUTS", DEFAULT_INPUTS))


PER_EXAMPLE: Final = 16
"""Inputs sent per Hypothesis example: the drawn one and byte-level mutations of it (see
:func:`variants`). Drawing is the slow part (~10-20 ms an example on a busy 2-core machine);
mutating is ~10 us, so this keeps the default suite's budget within its time."""


PARSER_SHARE: Final = 0.2
"""The parsers (reached only by an operator's config, or behind the ingress checks) get this
share of the budget in pytest; ``nox -s fuzz`` also runs atheris over them."""


def fuzz_settings(per_example: int = PER_EXAMPLE, share: float = 1.0) -> settings:
    """Hypothesis settings for one surface: enough examples for ``share`` of the budget at
    ``per_example`` inputs each; deterministic in the default suite (so it cannot flake), random
    in a campaign (a budget over the default)."""
    budget = max(1, -(-int(inputs() * share) // per_example))
    return settings(
        max_examples=budget,
        deadline=None,
        database=None,
        derandomize=inputs() <= DEFAULT_INPUTS,
        phases=[
            Phase.generate
        ],  # no shrinking: a hang would be replayed for minutes; the input is in the message
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )


_STRUCTURAL: Final = (
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b"\\",
    b",",
    b":",
    b"\x00",
    b"\xff",
    b"\n",
    b"1e999",
    b"-",
)


def variants(raw: bytes, seed: int, count: int = PER_EXAMPLE - 1) -> list[bytes]:
    """``count`` byte-level mutations of ``raw`` (flip, drop, repeat a slice, insert a
    structural byte, truncate), reproducible from ``seed``."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for _ in range(count):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            action = rng.randrange(5)
            if action == 0 and at < len(data):
                data[at] = rng.randrange(256)
            elif action == 1:
                del data[at : at + rng.randint(1, 3)]
            elif action == 2:
                data[at:at] = data[at : at + rng.randint(1, 16)]
            elif action == 3:
                data[at:at] = rng.choice(_STRUCTURAL)
            else:
                del data[at:]
        out.append(bytes(data))
    return out


def peak_rss() -> int:
    """The process's peak resident set size in bytes (``VmHWM``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


RSS_CEILING_MIB: Final = 1024
"""The documented ceiling (docs/hardening.md): the process holding the fuzzed proxy (and, in this
suite, its upstream and Hypothesis) must stay under it. ``HELIO_FUZZ_RSS_CEILING_MIB`` overrides."""


def record_rss(surface: str) -> None:
    """Note the peak RSS after ``surface``'s run and fail if it passed the ceiling."""
    peak = peak_rss()
    PEAK_RSS[surface] = peak
    ceiling = int(os.environ.get("HELIO_FUZZ_RSS_CEILING_MIB", RSS_CEILING_MIB))
    assert peak < ceiling << 20, f"peak RSS {peak >> 20} MiB after {surface} is over {ceiling} MiB"


def current_rss() -> int:
    """The process's resident set size in bytes now (``VmRSS``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_errors_logged(loop: asyncio.AbstractEventLoop | None = None) -> Iterator[list[str]]:
    """Collects every ERROR log record and every unhandled task exception while the block runs;
    the caller asserts the list is empty (a crash the answer did not show)."""
    handler = _Errors()
    root = logging.getLogger()
    root.addHandler(handler)
    found: list[str] = []
    previous = loop.get_exception_handler() if loop is not None else None
    if loop is not None:
        loop.set_exception_handler(lambda _loop, context: found.append(str(context.get("message"))))
    try:
        yield found
    finally:
        root.removeHandler(handler)
        if loop is not None:
            loop.set_exception_handler(previous)
        found.extend(
            f"{r.name}: {r.getMessage()} {r.exc_info[1] if r.exc_info else ''}" for r in handler.records
        )


@dataclass
class Answer:
    """What an ASGI app answered one request."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    chunks: list[bytes] = field(default_factory=list[bytes])

    def json(self) -> Any:
        return json.loads(self.body)


async def asgi_request(
    app: Callable[..., Any],
    method: str,
    path: str,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    query: bytes = b"",
    leave_streams: bool = True,
) -> Answer:
    """One request straight into an ASGI app (no socket): the body in one message, then the client
    stays until the answer is complete (an event stream: until its first event), then leaves.

    Raises ``TimeoutError`` after :data:`HANG_SECONDS` (a hang)."""
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers or []]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": query,
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 3000),
        "state": {},
    }
    done = asyncio.Event()
    sent_body = False
    answer = Answer(0, {})

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])
            }
            if (
                leave_streams
                and method == "GET"
                and answer.headers.get("content-type") == "text/event-stream"
            ):
                done.set()  # a GET stream may stay silent: its opening is the answer
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            answer.chunks.append(chunk)
            streaming = answer.headers.get("content-type", "").startswith("text/event-stream")
            if not message.get("more_body", False) or (leave_streams and streaming and chunk):
                done.set()

    try:
        async with asyncio.timeout(HANG_SECONDS):
            task = asyncio.ensure_future(app(scope, receive, send))
            try:
                await done.wait()
            finally:
                if not task.done():
                    done.set()
                await task
    except TimeoutError:
        raise AssertionError(
            f"hang: {method} {path}?{query!r} {headers!r} {body[:200]!r} (answered so far: {answer!r:.1200})"
        ) from None
    answer.body = b"".join(answer.chunks)
    return answer
