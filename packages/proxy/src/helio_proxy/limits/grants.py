"""Capacity grants: a rate or spend limit far from full is charged in blocks, not call by call.

A call under a ``rate_limit`` or ``spend_limit`` rule is normally reserved in the store before it
is forwarded: one transaction (SQLite) or one round trip (PostgreSQL) on the call's path. While
the bucket is far from its limit, the gate instead takes a **grant**: one ordinary reservation
of several calls' worth (:func:`grant_size`), after which calls of this process take their share
from it in memory, with no store work before they are forwarded. What the store counts is
never less than what was let through: a grant is charged in full, under the bucket's lock, before
any call uses it, and can only be granted while the bucket, grant included, holds at most
:data:`GRANT_CEILING` of its limit. Past that, every call is reserved on its own, as before.

A grant lives at most :data:`GRANT_SECONDS`, or until it is used up. Then it is **settled**, off
the calls' path (:func:`~helio_proxy.limits.ledger.settle_grant`): its row is replaced by one row
per call that used it, with each call's own time, amount and audit id, and the unused part is
given back, so the ledger ends as per-call reservations would have left it. Until then the
grant's row is marked (``audit_id`` ``grant:<settle-by time>``). A call the store refuses while
another process still holds an unsettled grant on the bucket waits until that grant is settled
or past its settle-by time (at most twice :data:`GRANT_SECONDS`) and is checked once more, so unused capacity held
elsewhere never refuses a call for good. A process that dies holding a grant leaves it charged
in full until the window passes it: the store errs on the side of counting more, never less.

What a call's record reports as ``used_before`` is, for a call that used a grant, the bucket as
the grant found it plus the earlier calls of this process that used the same grant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from helio_proxy.ids import new_hex
from helio_proxy.limits.charges import Charge
from helio_proxy.limits.ledger import GRANT_MARK, GrantUse
from helio_proxy.limits.windows import Usage
from helio_proxy.store.base import time_text

GRANT_CALLS: Final = 32
"""A grant holds this many times the amount of the call that asked for it..."""

GRANT_SHARE: Final = 64
"""...and at most this fraction (1/64) of the limit. A grant smaller than two calls is not taken:
limits under 128 calls are always reserved call by call."""

GRANT_CEILING: Final = Decimal("0.5")
"""A grant is taken only while the bucket, the grant included, holds at most this share of the limit."""

GRANT_SECONDS: Final = 1.0
"""A grant is settled at the latest this long after it was taken."""

MIN_WINDOW_SECONDS: Final = 60
"""Windows shorter than this (and session pots) are never granted: a grant must not outlive a
window's share of its calls."""


def grant_size(charge: Charge) -> Decimal | None:
    """How much to grant for a call making ``charge`` (``None``: reserve the call on its own)."""
    seconds = charge.window.seconds
    if charge.budget is not None or seconds is None or seconds < MIN_WINDOW_SECONDS or charge.amount <= 0:
        return None
    size = min(charge.amount * GRANT_CALLS, charge.limit / GRANT_SHARE)
    calls = int(size / charge.amount)
    if calls < 2:
        return None
    return charge.amount * calls


def grant_charge(charge: Charge, size: Decimal) -> Charge:
    """The reservation a grant makes: ``size`` from the call's bucket, against the grant ceiling."""
    return replace(charge, amount=size, limit=charge.limit * GRANT_CEILING)


def grant_mark(now: datetime) -> str:
    """The ``audit_id`` of a grant's row until it is settled (its settle-by time)."""
    return GRANT_MARK + time_text(now + timedelta(seconds=GRANT_SECONDS))


@dataclass(slots=True, eq=False)
class Grant:
    """A block of one bucket's capacity this process took, and the calls that used it."""

    charge: Charge
    """The reservation the grant made (the whole block)."""
    grant_id: str
    granted_at: datetime
    """The gate's clock when it was taken (a grant expires on that clock as well as the loop's)."""
    before: Usage
    """What the bucket held when the grant was taken (without it)."""
    deadline: float
    """``time.monotonic()`` after which no call may use it."""
    left: Decimal
    uses: list[GrantUse] = field(default_factory=list[GrantUse])
    used: Decimal = Decimal(0)
    closed: bool = False
    """Settled, or being settled: no call may use it any more."""

    @property
    def key(self) -> str:
        return self.charge.bucket.key

    def expired(self, now: datetime) -> bool:
        return (
            time.monotonic() >= self.deadline
            or now < self.granted_at
            or (now - self.granted_at).total_seconds() >= GRANT_SECONDS
        )

    def take(self, charge: Charge, now: datetime, audit_id: str | None) -> tuple[GrantUse, Usage] | None:
        """This call's share, and the bucket as this process sees it before the call; ``None``
        when the grant cannot take it (closed, expired, or too little left)."""
        if self.closed or charge.amount > self.left or self.expired(now):
            return None
        before = self.before
        used = Usage(
            before.total + self.used,
            before.count + len(self.uses),
            before.oldest or (self.uses[0].occurred_at if self.uses else None),
            self.uses[-1].occurred_at if self.uses else before.newest,
        )
        use = GrantUse(new_hex(), charge.amount, now, audit_id)
        self.uses.append(use)
        self.left -= charge.amount
        self.used += charge.amount
        return use, used

    def give_back(self, use: GrantUse) -> bool:
        """A call that never reached the upstream returns its share (``False``: the grant was
        already settled, with the call's row; the caller releases that row)."""
        if self.closed or use not in self.uses:
            return False
        self.uses.remove(use)
        self.left += use.amount
        self.used -= use.amount
        return True

    @property
    def unused(self) -> Decimal:
        return self.charge.amount - self.used
