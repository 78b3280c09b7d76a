"""``@value`` classes behave as frozen dataclasses do, except that the type checker, not the
runtime, refuses an assignment."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest

from helio_proxy.gateway.enforcement import Route
from helio_proxy.gateway.exchange import Inbound, JsonReply
from helio_proxy.governance import CallOutcome, ChargeFacts, GovernedCall, LimitFacts
from helio_proxy.jsonrpc import Message, parse
from helio_proxy.limits.charges import Bucket, Charge, Plan
from helio_proxy.limits.ledger import BucketView, Check, Reserved
from helio_proxy.limits.windows import Usage
from helio_proxy.policy import Allow
from helio_proxy.policy.facts import CallFacts, DecisionContext
from helio_proxy.values import value


@value
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenPoint:
    x: int
    y: int = 0
    tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)


def test_a_value_hashes_compares_replaces_and_pickles_as_a_frozen_dataclass() -> None:
    a, b = Point(1, 2), Point(1, 2)
    assert a == b
    assert hash(a) == hash(b) == hash(FrozenPoint(1, 2)) == hash((1, 2, ()))
    assert {a: "one"}[b] == "one"
    assert a != Point(1, 3)
    assert dataclasses.replace(a, y=5) == Point(1, 5)
    assert pickle.loads(pickle.dumps(a)) == a  # noqa: S301
    assert repr(a) == "Point(x=1, y=2, tags=())"
    assert not hasattr(a, "__dict__")  # slotted
    with pytest.raises(AttributeError):
        a.z = 1  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]


PER_CALL: list[type] = [
    Message,
    Inbound,
    JsonReply,
    CallFacts,
    DecisionContext,
    CallOutcome,
    GovernedCall,
    Route,
]
"""Made by every call (``GovernedCall`` and ``Route`` by every call that meets a gate)."""
PER_LIMITED_CALL: list[type] = [
    Bucket,
    Charge,
    Plan,
    Check,
    BucketView,
    Reserved,
    Usage,
    ChargeFacts,
    LimitFacts,
]
"""Made by every call under a rate or spend limit or a budget."""


@pytest.mark.parametrize("cls", PER_CALL + PER_LIMITED_CALL)
def test_the_per_call_classes_are_values(cls: type) -> None:
    params: Any = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert (params.frozen, params.unsafe_hash) == (False, True)
    assert "__slots__" in cls.__dict__


def test_per_call_values_stay_usable_as_keys() -> None:
    facts = CallFacts("t", None, upstream="u")
    assert {facts: 1}[CallFacts("t", None, upstream="u")] == 1
    outcome = CallOutcome("t", Allow(reason="default"), Allow(reason="default"))
    assert outcome == CallOutcome("t", Allow(reason="default"), Allow(reason="default"))
    message = parse(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert isinstance(message, Message)
    assert message.method == "ping"


def test_a_bucket_keeps_its_keys_through_replace_and_pickle() -> None:
    bucket = Bucket("budget", "team", "", "session", "s1")
    assert (bucket.key, bucket.ledger_key) == ("budget:team::session:s1", "session:s1")
    again = dataclasses.replace(bucket, version="3")  # a budget's epoch, filled in by the ledger
    assert (again.key, again.ledger_key) == ("budget:team:3:session:s1", "session:s1")
    assert pickle.loads(pickle.dumps(again)).key == again.key  # noqa: S301
    assert Bucket("rate", "calls", "abc", "global", None).key == "rate:calls:abc:global"
    assert bucket == Bucket("budget", "team", "", "session", "s1")
    assert hash(bucket) == hash(Bucket("budget", "team", "", "session", "s1"))
