"""Server-sent events, the framing of the HTTP edges: an incremental parser (upstream answers and
streams become messages) and the encoder of the events the proxy writes to agents.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from helio_proxy.gateway.exchange import UpstreamMessage

MAX_EVENT_BYTES: Final = 16 << 20
"""An upstream event larger than this (16 MiB) is treated as a protocol error."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event: its fields, and the exact bytes (including the blank line) it arrived as."""

    raw: bytes
    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The ``data`` parsed as JSON, or ``None`` if it is not JSON."""
        if not self.data:
            return None
        try:
            return json.loads(self.data)
        except json.JSONDecodeError:
            return None

    @property
    def is_message(self) -> bool:
        return self.event in (None, "message") and bool(self.data)


def encode_event(data: bytes, *, event: str | None = "message", event_id: str | None = None) -> bytes:
    """Serialize one event the way the proxy writes its own (single-line JSON data)."""
    out = b""
    if event:
        out += b"event: " + event.encode() + b"\n"
    if event_id is not None:
        out += b"id: " + event_id.encode() + b"\n"
    return out + b"data: " + data + b"\n\n"


def encode_message(message: UpstreamMessage) -> bytes:
    """One relayed message as an SSE ``message`` event, its event id and ``retry`` kept (a message
    that carries only those becomes an event with empty data). A message over several lines (pretty-printed
    JSON) becomes one ``data`` line each, which the client joins back."""
    out = b"event: message\n" if message.raw else b""
    if message.event_id is not None:
        out += b"id: " + message.event_id.encode() + b"\n"
    if message.retry is not None:
        out += b"retry: " + str(message.retry).encode() + b"\n"
    lines = message.raw.splitlines() or [b""]
    return out + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


def _parse_block(lines: list[bytes], raw: bytes) -> SseEvent | None:
    data: list[str] = []
    event: str | None = None
    event_id: str | None = None
    retry: int | None = None
    for line in lines:
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        text = value.decode("utf-8", errors="replace")
        match name:
            case b"data":
                data.append(text)
            case b"event":
                event = text
            case b"id":
                if "\0" not in text:
                    event_id = text
            case b"retry":
                retry = int(text) if text.isdigit() else retry
            case _:
                pass
    if not data and event is None and event_id is None and retry is None:
        return None
    return SseEvent(raw=raw, data="\n".join(data), event=event, id=event_id, retry=retry)


_BLANK_LINE: Final = re.compile(rb"\r\n\r\n|\r\n\n|\r\r|\n\r\n|\n\n")
"""The end of an event: a line end (CRLF, LF or CR) followed by an empty line. One left-to-right
search finds the earliest; at one position the alternatives exclude each other."""


class SseParser:
    """Feed bytes in, get complete events out. Handles ``\\n``, ``\\r\\n`` and ``\\r`` line ends."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = b""
        self._max = max_event_bytes
        self._scanned = 0
        """How much of the buffer holds no event end (searched again only from near its end)."""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk
        buffer = self._buffer
        events: list[SseEvent] = []
        at = 0  # the events are cut off once, after the loop: no copy of the rest per event
        search_from = max(0, self._scanned - 3)
        while True:
            found = _BLANK_LINE.search(buffer, search_from)
            if found is None:
                break
            end = found.end()
            raw = buffer[at:end]
            lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            parsed = _parse_block(lines, raw)
            if parsed is not None:
                events.append(parsed)
            at = search_from = end
        if at:
            self._buffer = buffer = buffer[at:]
        if len(buffer) > self._max:
            raise ValueError(f"SSE event larger than {self._max} bytes")
        self._scanned = len(buffer)
        return events

    def flush(self) -> list[SseEvent]:
        """The trailing event, if the stream ended without a final blank line."""
        rest, self._buffer = self._buffer, b""
        if not rest.strip():
            return []
        lines = rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        parsed = _parse_block(lines, rest + b"\n\n")
        return [parsed] if parsed is not None else []


async def iter_events(
    chunks: AsyncIterator[bytes], max_event_bytes: int = MAX_EVENT_BYTES
) -> AsyncIterator[SseEvent]:
    """Turn a byte stream into events."""
    parser = SseParser(max_event_bytes)
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.flush():
        yield event
