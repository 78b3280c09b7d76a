"""Walking the audit chain: the first broken or missing link, or a count of verified records.

Checks, in sequence order starting at the chain's anchor: no sequence number is missing; each
record's ``prev_hash`` is its predecessor's hash; each record's hash matches its contents; each
signature (when a key is given and once signing began) verifies; and the last record is the
chain head. Records are read in pages, so memory stays flat on large stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Select, select

from helio_proxy.audit.chain import ChainState, record_hash, signature_valid
from helio_proxy.store.base import Store
from helio_proxy.store.tables import AUDIT_CHAIN, AUDIT_RECORDS

PAGE_SIZE: Final = 2000


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing wrong with the chain."""

    record_id: str | None
    seq: int | None
    kind: str
    """``missing``, ``broken_link``, ``altered``, ``unchained``, ``bad_signature``, ``unsigned`` or ``truncated``."""
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    verified: int
    signed: int
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _state(conn: Connection) -> ChainState:
    row = conn.execute(select(AUDIT_CHAIN).where(AUDIT_CHAIN.c.id == 1)).one()
    return ChainState(row.seq, row.head_hash, row.anchor_seq, row.anchor_hash)


def _rows(query: Select[Any], conn: Connection) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in conn.execute(query)]  # pyright: ignore[reportPrivateUsage]


def _pages(store: Store, after: int) -> Iterator[list[dict[str, Any]]]:
    while True:
        query = (
            select(AUDIT_RECORDS)
            .where(AUDIT_RECORDS.c.seq > after)
            .order_by(AUDIT_RECORDS.c.seq)
            .limit(PAGE_SIZE)
        )
        rows = store.read_sync(partial(_rows, query))
        if not rows:
            return
        yield rows
        after = int(rows[-1]["seq"])


def chain_length(store: Store) -> int:
    """How many records a full verification walks (the chain head past its anchor)."""
    state = store.read_sync(_state)
    return max(0, state.seq - state.anchor_seq)


def verify_chain(
    store: Store,
    public_key: Ed25519PublicKey | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify every record of ``store`` (blocking; run it off the event loop).

    ``progress`` is called with the number of records read after each page (for a progress bar).
    """
    state = store.read_sync(_state)
    expected_seq, expected_prev = state.anchor_seq + 1, state.anchor_hash
    verified = signed = 0
    signing_began = False

    def report(row: dict[str, Any] | None, kind: str, detail: str) -> VerifyReport:
        problem = Problem(str(row["id"]) if row else None, int(row["seq"]) if row else None, kind, detail)
        return VerifyReport(verified, signed, problem)

    for page in _pages(store, state.anchor_seq):
        for row in page:
            seq = int(row["seq"])
            if seq != expected_seq:
                return report(
                    row, "missing", f"records {expected_seq}..{seq - 1} before this one are missing"
                )
            if row["hash"] is None:
                return report(row, "unchained", "written without a hash (audit.hash_chain was off)")
            if row["prev_hash"] != expected_prev:
                return report(
                    row,
                    "broken_link",
                    "prev_hash does not match the previous record's hash (edited or replaced)",
                )
            if record_hash(row) != row["hash"]:
                return report(row, "altered", "contents do not match the record's hash")
            if public_key is not None:
                if row["signature"] is not None:
                    if not signature_valid(public_key, row["hash"], row["signature"]):
                        return report(row, "bad_signature", "signature does not verify with the given key")
                    signing_began = True
                    signed += 1
                elif signing_began:
                    return report(row, "unsigned", "unsigned record after signed ones (signature removed?)")
            verified += 1
            expected_seq, expected_prev = seq + 1, row["hash"]
        if progress is not None:
            progress(len(page))
    if expected_seq - 1 != state.seq or expected_prev != state.head_hash:
        return report(
            None,
            "truncated",
            f"the chain head is record {state.seq} but the last record found is {expected_seq - 1}",
        )
    return VerifyReport(verified, signed, None)
