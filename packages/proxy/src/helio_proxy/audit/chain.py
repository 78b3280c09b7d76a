"""The tamper-evident chain: every record carries the hash of its predecessor, and may be signed.

A record's hash is SHA-256 over the canonical JSON (sorted keys, no whitespace, UTF-8) of all its
stored columns except ``hash`` and ``signature``, ``prev_hash`` included. One chain per store: its
head lives in ``audit_chain`` and advances in the same transaction as the records it covers,
under a row lock, so writers on several replicas take turns. With a signing key every hash is
also signed with Ed25519 (base64 in ``signature``), which a verifier holding only the public key
can check: unlike the chain, a signature cannot be recomputed by someone who edits the database.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, insert, select, update

from helio_proxy.audit.clock import SYSTEM_CLOCK, Clock
from helio_proxy.audit.rows import COLUMNS
from helio_proxy.store.base import StoreError, time_text
from helio_proxy.store.sqlite import sqlite_driver
from helio_proxy.store.tables import AUDIT_CHAIN, AUDIT_RECORDS

GENESIS_HASH: Final = "0" * 64
"""``prev_hash`` of the first record of a store."""

INSERT_CHUNK: Final = 50
"""Rows per INSERT statement; between statements the writer thread yields the GIL."""

HASHED_COLUMNS: Final = tuple(name for name in COLUMNS if name not in ("hash", "signature"))


_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_SCALARS: Final = frozenset({str, int, bool, float, type(None)})

_SHORTEST_FIXED: Final = 1e-4
_LONGEST_FIXED: Final = 1e16
"""Python writes a float with an exponent below the one and from the other on; orjson writes
every float in between with the same digits (tests/unit/audit/test_canonical_fast.py)."""


def _orjson_agrees(values: tuple[Any, ...]) -> bool:
    """Whether orjson writes every one of ``values`` as :data:`_CANONICAL` does (but for what it
    refuses: integers beyond 64 bits and lone surrogates raise, and are left to the standard one).

    orjson escapes strings as the standard library does with ``ensure_ascii=False``, and writes
    the same digits for integers and for floats in the range Python writes without an exponent;
    a non-finite float, one with an exponent, a subclass or any other type is not taken.
    """
    kinds = tuple(map(type, values))
    if not _SCALARS.issuperset(kinds):
        return False
    if float in kinds:
        for value in [value for value in values if value.__class__ is float]:
            if not (_SHORTEST_FIXED <= abs(value) < _LONGEST_FIXED or value == 0.0):
                return False
    return True


def _orjson_canonical(keys: tuple[str, ...], values: tuple[Any, ...]) -> bytes | None:
    """The bytes of :data:`_CANONICAL` for ``keys`` (sorted, plain ``str``) and their ``values``,
    from orjson where its output is the same, else ``None``."""
    if not _orjson_agrees(values):
        return None
    try:
        return orjson.dumps(dict(zip(keys, values, strict=True)))
    except TypeError:  # orjson.JSONEncodeError too
        return None


def canonical_json(material: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes a record's hash is taken over."""
    if all(key.__class__ is str for key in material):
        keys = tuple(sorted(material))  # the order the standard encoder's sort_keys gives
        fast = _orjson_canonical(keys, tuple(map(material.__getitem__, keys)))
        if fast is not None:
            return fast
    return _CANONICAL.encode(material).encode("utf-8")


_HASHED_SORTED: Final = tuple(sorted(HASHED_COLUMNS))
"""The hashed columns in canonical order (plain ``str``, as :data:`COLUMNS` is: orjson takes no
subclass for a key)."""
_HASHED_VALUES: Final = cast(
    "Callable[[Mapping[str, Any]], tuple[Any, ...]]", itemgetter(*_HASHED_SORTED)
)  # several names: a tuple, in C


_HASHED_SET: Final = frozenset(HASHED_COLUMNS)


def record_hash(row: Mapping[str, Any]) -> str:
    """The hash of a stored row (its ``prev_hash`` included)."""
    material: bytes | None = None
    if row.__class__ is dict and len(row) == len(_HASHED_SET) and _HASHED_SET.issuperset(row):
        # a new row, before its hash is set: hashed as it is
        if _orjson_agrees(tuple(row.values())):
            try:  # orjson sorts plain str keys by code point, as the standard encoder does
                material = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
            except TypeError:  # orjson.JSONEncodeError too (and a key that is a str subclass)
                material = None
    else:
        material = _orjson_canonical(_HASHED_SORTED, _HASHED_VALUES(row))
    if material is None:
        material = _CANONICAL.encode({name: row[name] for name in HASHED_COLUMNS}).encode("utf-8")
    return hashlib.sha256(material).hexdigest()


class SigningKeyError(StoreError):
    """A signing or verification key could not be loaded."""


def _key_bytes(setting: str) -> bytes:
    text = setting.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    try:
        return Path(text).expanduser().read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the audit signing key {text}: {exc.strerror}") from None


def load_private_key(setting: str) -> Ed25519PrivateKey:
    """``audit.signing_key``: a PEM file path, or PEM text (from ``${VAR}``)."""
    try:
        key = serialization.load_pem_private_key(_key_bytes(setting), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"audit.signing_key is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError("audit.signing_key must be an Ed25519 key (openssl genpkey -algorithm ed25519)")
    return key


def load_public_key(setting: str) -> Ed25519PublicKey:
    """A verification key from a public-key PEM, or derived from a private-key PEM."""
    data = _key_bytes(setting)
    if b"PRIVATE KEY" in data:
        return load_private_key(data.decode()).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("the verification key must be an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, digest: str) -> str:
    return base64.b64encode(key.sign(bytes.fromhex(digest))).decode("ascii")


def signature_valid(key: Ed25519PublicKey, digest: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), bytes.fromhex(digest))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class ChainState:
    seq: int
    head_hash: str
    anchor_seq: int
    anchor_hash: str


@functools.cache
def _driver_insert(paramstyle: str) -> str | None:
    """The INSERT for a driver's own ``executemany`` with dict rows, where we know its style."""
    if paramstyle != "pyformat":
        return None
    placeholder = "%({})s"
    names = [column.name for column in AUDIT_RECORDS.columns]
    columns = ", ".join(f'"{name}"' for name in names)
    values = ", ".join(placeholder.format(name) for name in names)
    return f"INSERT INTO audit_records ({columns}) VALUES ({values})"  # noqa: S608 - fixed column names


_SQLITE_ROWS_PER_INSERT: Final = min(
    INSERT_CHUNK, (32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999) // len(COLUMNS)
)
"""Rows per multi-row INSERT on SQLite: under its limit on bound values per statement."""

SHORT_BATCH_STEP: Final = 10
"""For a batch of at most :data:`INSERT_CHUNK` rows (a writer keeping pace): the rows hashed
between two pauses, and the rows per INSERT on SQLite (see :func:`append_rows`)."""


def short_steps(rows: Sequence[object], step_pause: float | None) -> bool:
    """Whether a batch of ``rows`` is worked on in steps of :data:`SHORT_BATCH_STEP` rows:
    batched audit (``step_pause`` set) and a batch of a writer keeping pace (at most
    :data:`INSERT_CHUNK` rows; a larger one means it is catching up, and long steps let it)."""
    return step_pause is not None and len(rows) <= INSERT_CHUNK


_T = TypeVar("_T")


def stepped(items: Sequence[_T], step_pause: float | None) -> Iterator[_T]:
    """``items`` in order; for a batch worked on in short steps (:func:`short_steps`), with a
    ``time.sleep(step_pause)`` before every :data:`SHORT_BATCH_STEP`-th item after the first."""
    if step_pause is None or not short_steps(items, step_pause):
        yield from items
        return
    for index, item in enumerate(items):
        if index and not index % SHORT_BATCH_STEP:
            time.sleep(step_pause)
        yield item


@functools.cache
def _sqlite_multi_insert(rows: int) -> str:
    """``INSERT INTO audit_records (...) VALUES (?, ...), (?, ...)`` for ``rows`` rows (SQLite)."""
    columns = ", ".join(f'"{name}"' for name in COLUMNS)
    one = "(" + ", ".join("?" * len(COLUMNS)) + ")"
    return f"INSERT INTO audit_records ({columns}) VALUES " + ", ".join([one] * rows)  # noqa: S608


_SQLITE_HEAD: Final = "SELECT seq, head_hash, anchor_seq, anchor_hash FROM audit_chain WHERE id = 1"
_SQLITE_ADVANCE: Final = "UPDATE audit_chain SET seq = ?, head_hash = ? WHERE id = 1"


def lock_chain(conn: Connection) -> ChainState:
    """Read the chain head, holding its row lock until the transaction ends (PostgreSQL).

    On SQLite the writer's ``BEGIN IMMEDIATE`` already holds the database's write lock.
    """
    driver = sqlite_driver(conn)
    if driver is not None:
        head = driver.execute(_SQLITE_HEAD).fetchone()
        if head is None:
            raise StoreError("the audit chain head row is missing (the store was not migrated?)")
        return ChainState(*head)
    row = conn.execute(select(AUDIT_CHAIN).where(AUDIT_CHAIN.c.id == 1).with_for_update()).one()
    return ChainState(row.seq, row.head_hash, row.anchor_seq, row.anchor_hash)


def append_rows(
    conn: Connection,
    rows: Sequence[dict[str, Any]],
    *,
    chained: bool = True,
    signer: Ed25519PrivateKey | None = None,
    step_pause: float | None = None,
) -> ChainState:
    """Give ``rows`` their sequence numbers and links, insert them, advance the head.

    ``step_pause`` (batched audit): a batch of at most :data:`INSERT_CHUNK` rows is worked on in
    steps of :data:`SHORT_BATCH_STEP` rows with a ``time.sleep(step_pause)`` between them (``0``
    lets go of the GIL only, as both the writer thread and the writer process do: this runs
    holding the write lock, see :data:`~helio_proxy.audit.sink.STEP_PAUSE`). ``None`` (strict
    audit): long steps."""
    state = lock_chain(conn)
    seq, head = state.seq, state.head_hash
    # A batch of the writer's usual size lets go of the GIL every 10 rows while hashing, as it
    # does between its INSERTs below: hashing 50 rows held it for about 0.3 ms, which a call
    # arriving meanwhile waited out (c=1 p99 1.31-1.73 ms with the yields, 1.74-1.99 without).
    # Not with strict durability: there every call waits for its batch's commit, and each step
    # that waits for the GIL beside a busy event loop made the commit later (2,371-2,525 against
    # 2,459-2,911 calls/s at 32 connections).
    short = short_steps(rows, step_pause)
    pause = step_pause if short and step_pause is not None else 0.0
    for row in stepped(rows, step_pause):
        seq += 1
        row["seq"] = seq
        if chained:
            row["prev_hash"] = head
            head = record_hash(row)
            row["hash"] = head
            row["signature"] = sign(signer, head) if signer is not None else None
        else:
            row["prev_hash"] = row["hash"] = row["signature"] = None
    driver = sqlite_driver(conn)
    statement = None if driver is not None else _driver_insert(conn.dialect.paramstyle)
    size = INSERT_CHUNK
    if driver is not None:
        # A batch of the writer's usual size goes in steps of 10 rows: a 50-row step ran for about
        # 2 ms, and calls that arrived meanwhile, one at a time, waited for it (most of the c=1
        # calls over 2 ms with a writer thread). A larger batch means the writer is catching up:
        # its steps stay long, since each handover of the GIL between them can wait a switch
        # interval beside a busy event loop, and short steps made it fall behind.
        size = SHORT_BATCH_STEP if short else _SQLITE_ROWS_PER_INSERT
    # SQLite: newest first. The word index's rowid is the seq negated (migration 0009), and FTS5
    # writes what it has gathered as a new segment whenever a rowid is not above the last one it
    # was given: rows in seq order made one segment (and its merging) per row, about half of the
    # insert's CPU. Newest first, a transaction's rows reach it in ascending rowid order, one
    # segment per transaction. Order does not matter otherwise: seq, links and hashes are set
    # above, and every reader orders by seq.
    ordered = rows[::-1] if driver is not None else rows
    for start in range(0, len(ordered), size):
        chunk = list(ordered[start : start + size])
        # Rows are plain values already: the driver's own statement skips SQLAlchemy's per-row
        # processing, which would hold the GIL (shared with the event loop) for nothing.
        if driver is not None:
            # SQLite: one multi-row INSERT per chunk, one sqlite3_step. executemany steps once per
            # row, letting go of the GIL each time; beside a saturated event loop, which holds it,
            # taking it back waits out a switch interval (5 ms), so the writer committed about 200
            # rows/s under 3,000 calls/s, fell behind and dropped records once its queue was full.
            values = [row[name] for row in chunk for name in COLUMNS]
            driver.execute(_sqlite_multi_insert(len(chunk)), values)
        elif statement is not None:
            conn.exec_driver_sql(statement, chunk)
        else:
            conn.execute(insert(AUDIT_RECORDS), chunk)
        # Let the event loop have the GIL between chunks (short steps, or a large group).
        time.sleep(pause)
    if rows:
        if driver is not None:
            driver.execute(_SQLITE_ADVANCE, (seq, head))
        else:
            conn.execute(update(AUDIT_CHAIN).where(AUDIT_CHAIN.c.id == 1).values(seq=seq, head_hash=head))
    return ChainState(seq, head, state.anchor_seq, state.anchor_hash)


def write_job(
    rows: Sequence[dict[str, Any]],
    *,
    chained: bool,
    signer: Ed25519PrivateKey | None,
    clock: Clock = SYSTEM_CLOCK,
    step_pause: float | None = None,
) -> Callable[[Connection], int]:
    """The store job that commits one batch of rows: stamped, chained, inserted."""

    def run(conn: Connection) -> int:
        created = time_text(clock.now())
        for row in rows:  # a retried batch gets its chain columns again in append_rows
            row["created_at"] = created
        append_rows(conn, rows, chained=chained, signer=signer, step_pause=step_pause)
        return len(rows)

    return run


def existing_ids(ids: Sequence[str]) -> Callable[[Connection], set[str]]:
    """A read job: which of ``ids`` the store holds already (a resent batch skips them)."""

    def run(conn: Connection) -> set[str]:
        found = conn.execute(select(AUDIT_RECORDS.c.id).where(AUDIT_RECORDS.c.id.in_(list(ids))))
        return {str(value) for (value,) in found}

    return run
