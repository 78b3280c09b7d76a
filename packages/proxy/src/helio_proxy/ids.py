"""Cheap unique ids for the hot path: time-ordered UUIDs (version 7) without ``os.urandom`` per id.

``uuid.uuid4()`` reads 16 random bytes from the kernel for every id, and random ids land all over
the audit table's unique index. These ids take the time in milliseconds, 42 random bits drawn
once per process (again after a ``fork``) and a counter that starts at a random value: unique
within a process by the counter, across processes by the random part, and sorted by time, so the
``audit_records.id`` index grows at its end. They are valid RFC 9562 version-7 UUIDs.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
import uuid
from typing import Final

_COUNTER_BITS: Final = 32
_COUNTER_MASK: Final = (1 << _COUNTER_BITS) - 1
_VERSION_7: Final = 0x7 << 76
_VARIANT: Final = 0b10 << 62

_process_bits = 0
_counter = itertools.count()


def _reseed() -> None:
    """New random bits and counter start for this process (at import and in a forked child)."""
    global _process_bits, _counter
    rand_a = secrets.randbits(12) << 64
    rand_b = secrets.randbits(30) << _COUNTER_BITS
    _process_bits = _VERSION_7 | rand_a | _VARIANT | rand_b
    _counter = itertools.count(secrets.randbits(_COUNTER_BITS))


_reseed()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_id_int() -> int:
    """The 128-bit value of a fresh id."""
    return (time.time_ns() // 1_000_000) << 80 | _process_bits | (next(_counter) & _COUNTER_MASK)


_UUID: Final = uuid.UUID
_UNKNOWN_SAFETY: Final = uuid.SafeUUID.unknown
_new = object.__new__
_set = object.__setattr__


def new_uuid() -> uuid.UUID:
    """A fresh time-ordered UUID (version 7).

    Made as ``uuid.UUID(int=...)`` makes one (its two slots, ``int`` and ``is_safe``), without
    that constructor's checks of arguments this function never passes: 1.3 against 2.3 µs on the
    benchmark VM, once per audit record."""
    made = _new(_UUID)
    _set(made, "int", new_id_int())
    _set(made, "is_safe", _UNKNOWN_SAFETY)
    return made


def new_hex() -> str:
    """A fresh id as 32 lower-case hex characters (the form of ``uuid4().hex``)."""
    return f"{new_id_int():032x}"
