"""Ticket jobs on the store: every transition races safely, on SQLite and on PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from helio_proxy.approvals.model import (
    CallKey,
    Ticket,
    TicketConflict,
    TicketNotFound,
    TicketStatus,
    Verdict,
    arguments_digest,
)
from helio_proxy.approvals.tickets import (
    adopt_orphan,
    claim_retry,
    consume,
    create_ticket,
    decide,
    list_tickets,
    load_ticket,
    release_holder,
    sweep,
)
from helio_proxy.store import Store, time_text
from tests.unit.approvals.factories import ARGS, NOW, ticket

KEY = CallKey("s1", None, "pay", arguments_digest(ARGS), "c" * 64, "rule")


def test_the_arguments_digest_ignores_key_order_but_not_values() -> None:
    assert arguments_digest({"a": 1, "b": [1, 2]}) == arguments_digest({"b": [1, 2], "a": 1})
    assert arguments_digest({"a": 1}) != arguments_digest({"a": 1.5})
    assert arguments_digest(None) == arguments_digest({})


def test_a_ticket_round_trips_with_a_frozen_copy_of_the_arguments(store: Store) -> None:
    made = ticket()
    store.submit(create_ticket(made)).result()
    loaded = store.read_sync(load_ticket(made.id))
    assert loaded is not None
    assert loaded.request.tool_input == ARGS
    assert loaded.to_json()["tool_input"] == ARGS
    first = loaded.request.tool_input
    first["amount"] = 10_000  # a caller mutating its copy changes nothing stored
    assert loaded.request.tool_input == ARGS
    page, total = store.read_sync(list_tickets("pending", 10, 0))
    assert (total, [t.id for t in page]) == (1, [made.id])
    assert store.read_sync(list_tickets("denied", 10, 0)) == ([], 0)


def test_quorum_counts_distinct_approvers_and_one_denial_denies(store: Store) -> None:
    two = ticket(quorum=2)
    store.submit(create_ticket(two)).result()
    after, resolved = store.submit(decide(two.id, Verdict("alice", "approve"), NOW)).result()
    assert (after.status, resolved, after.approvers) == (TicketStatus.PENDING, False, ["alice"])
    with pytest.raises(TicketConflict, match="already approved"):
        store.submit(decide(two.id, Verdict("alice", "approve"), NOW)).result()
    after, resolved = store.submit(decide(two.id, Verdict("bob", "approve"), NOW)).result()
    assert (after.status, resolved, after.resolved_by) == (TicketStatus.APPROVED, True, "alice,bob")
    with pytest.raises(TicketConflict, match="already approved"):
        store.submit(decide(two.id, Verdict("carol", "deny", "late"), NOW)).result()

    denied = ticket(quorum=3)
    store.submit(create_ticket(denied)).result()
    store.submit(decide(denied.id, Verdict("alice", "approve"), NOW)).result()
    after, resolved = store.submit(decide(denied.id, Verdict("bob", "deny", "no"), NOW)).result()
    assert (after.status, resolved, after.denial and after.denial.text) == (TicketStatus.DENIED, True, "no")

    with pytest.raises(TicketNotFound):
        store.submit(decide("missing", Verdict("alice", "approve"), NOW)).result()
    expired = ticket()
    store.submit(create_ticket(expired)).result()
    with pytest.raises(TicketConflict, match="expired"):
        store.submit(decide(expired.id, Verdict("alice", "approve"), NOW + timedelta(minutes=6))).result()


def test_an_approved_ticket_releases_exactly_one_call(store: Store) -> None:
    made = ticket(holder=None, status=TicketStatus.ORPHANED)
    store.submit(create_ticket(made)).result()
    # Undecided: a retry is not released.
    assert store.submit(claim_retry(KEY, NOW)).result() is None
    store.submit(decide(made.id, Verdict("alice", "approve"), NOW)).result()
    # Another session, upstream, arguments or config: not the same call.
    for other in (
        replace(KEY, session_id="s2"),
        replace(KEY, upstream="prod"),
        replace(KEY, arguments_digest=arguments_digest({**ARGS, "amount": 11})),
        replace(KEY, config_sha256="d" * 64),
    ):
        assert store.submit(claim_retry(other, NOW)).result() is None
    assert store.submit(claim_retry(KEY, NOW + timedelta(minutes=6))).result() is None  # expired
    claimed = store.submit(claim_retry(KEY, NOW)).result()
    assert claimed is not None
    assert claimed.id == made.id
    assert store.submit(claim_retry(KEY, NOW)).result() is None
    stored = store.read_sync(load_ticket(made.id))
    assert stored is not None
    assert stored.status == TicketStatus.CONSUMED


def test_a_held_ticket_is_consumed_only_by_its_holder_never_by_a_retry(store: Store) -> None:
    made = ticket(holder="proxy-a")
    store.submit(create_ticket(made)).result()
    store.submit(decide(made.id, Verdict("alice", "approve"), NOW)).result()
    assert store.submit(claim_retry(KEY, NOW)).result() is None
    assert store.submit(consume(made.id, "proxy-b", NOW)).result() is False
    assert store.submit(consume(made.id, "proxy-a", NOW)).result() is True
    assert store.submit(consume(made.id, "proxy-a", NOW)).result() is False


def test_a_stopped_proxys_ticket_is_orphaned_and_adopted_by_the_identical_retry(store: Store) -> None:
    made = ticket(holder="proxy-a")
    store.submit(create_ticket(made)).result()
    assert store.submit(release_holder(made.id, "proxy-b")).result() is False
    assert store.submit(release_holder(made.id, "proxy-a")).result() is True
    orphan = store.read_sync(load_ticket(made.id))
    assert orphan is not None
    assert (orphan.status, orphan.holder) == (TicketStatus.ORPHANED, None)
    adopted = store.submit(adopt_orphan(KEY, "proxy-b", NOW)).result()
    assert adopted is not None
    assert (adopted.id, adopted.status, adopted.holder) == (made.id, TicketStatus.PENDING, "proxy-b")
    assert store.submit(adopt_orphan(KEY, "proxy-c", NOW)).result() is None


def test_sweeps_orphan_tickets_of_silent_proxies_and_time_out_expired_orphans(store: Store) -> None:
    silent = ticket(holder="dead", holder_seen_at=time_text(NOW - timedelta(minutes=2)))
    alive = ticket(holder="alive", holder_seen_at=time_text(NOW))
    approved = ticket(holder="dead", holder_seen_at=time_text(NOW - timedelta(minutes=2)), session="s2")
    expired = ticket(
        holder=None,
        status=TicketStatus.ORPHANED,
        created_at=time_text(NOW - timedelta(minutes=10)),
        expires_at=time_text(NOW - timedelta(minutes=5)),
    )
    for made in (silent, alive, approved, expired):
        store.submit(create_ticket(made)).result()
    store.submit(decide(approved.id, Verdict("alice", "approve"), NOW)).result()

    result = store.submit(sweep(NOW, NOW - timedelta(seconds=30), None)).result()
    assert (result.orphaned, result.expired) == (1, [expired.id])

    def status(made: Ticket) -> tuple[TicketStatus, str | None]:
        loaded = store.read_sync(load_ticket(made.id))
        assert loaded is not None
        return loaded.status, loaded.holder

    assert status(silent) == (TicketStatus.ORPHANED, None)
    assert status(alive) == (TicketStatus.PENDING, "alive")
    assert status(approved) == (TicketStatus.APPROVED, None)  # now the agent's retry may take it
    assert status(expired) == (TicketStatus.TIMEOUT, None)
    # Retention: tickets created before the cutoff that are final or expired are deleted.
    later = store.submit(sweep(NOW, NOW - timedelta(seconds=30), NOW - timedelta(minutes=1))).result()
    assert later.deleted == 1
    assert store.read_sync(load_ticket(expired.id)) is None


def test_max_open_counts_pending_and_orphaned_tickets_only(store: Store) -> None:
    """``approval.max_pending``: the insert is refused (``None``) once that many tickets are open."""
    first, second = ticket(), ticket(session="s2")
    assert store.submit(create_ticket(first, max_open=2)).result() == first
    assert store.submit(create_ticket(second, max_open=2)).result() == second
    assert store.submit(release_holder(second.id, "proxy-a")).result()  # orphaned: still open
    refused = ticket(session="s3")
    assert store.submit(create_ticket(refused, max_open=2)).result() is None
    assert store.read_sync(load_ticket(refused.id)) is None
    store.submit(decide(first.id, Verdict("alice", "deny", "no"), NOW)).result()  # final: its place is free
    assert store.submit(create_ticket(refused, max_open=2)).result() == refused
    # Open tickets past their expiry (not swept yet) hold no place.
    later = ticket(session="s5", created_at=time_text(NOW + timedelta(minutes=6)))
    assert store.submit(create_ticket(later, max_open=1)).result() == later
    assert store.submit(create_ticket(ticket(session="s4"))).result() is not None  # no cap given
