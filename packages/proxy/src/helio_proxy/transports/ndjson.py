"""Newline-delimited JSON-RPC, the MCP stdio framing: one message per line, no embedded newlines.

Shared by the stdio upstream (the child's stdin/stdout) and ``helio wrap`` (the proxy's own).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Final

from helio_proxy.jsonrpc import dumps

MAX_LINE_BYTES: Final = 16 << 20
"""A line longer than this (16 MiB) is dropped (the reader's buffer limit)."""


class OversizedLine:
    """Marker yielded in place of a line longer than the reader's limit (its bytes are discarded)."""

    __slots__ = ()


OVERSIZED: Final = OversizedLine()


def encode_line(raw: bytes) -> bytes:
    """One JSON message as a line.

    The bytes are kept as they are unless they contain a line break (pretty-printed JSON from an
    HTTP client); then the message is re-serialised compactly, which changes whitespace only.
    Raises ``ValueError`` when such bytes are not JSON.
    """
    if b"\n" in raw or b"\r" in raw:
        raw = dumps(json.loads(raw))
    return raw + b"\n"


async def read_lines(reader: asyncio.StreamReader) -> AsyncIterator[bytes | OversizedLine]:
    """Non-blank lines without their terminator until EOF; :data:`OVERSIZED` for a line over the limit."""
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # longer than the reader's limit; asyncio discarded what it buffered
            yield OVERSIZED
            continue
        if not line:
            return
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line
