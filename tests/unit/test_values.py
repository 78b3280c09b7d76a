"""``@value`` classes behave as frozen dataclasses do, except that the type checker, not the
runtime, refuses an assignment."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from helio_proxy.gateway.exchange import Inbound, JsonReply
from helio_proxy.governance import CallOutcome
from helio_proxy.jsonrpc import Message, parse
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


@pytest.mark.parametrize("cls", [Message, Inbound, JsonReply, CallFacts, DecisionContext, CallOutcome])
def test_the_per_call_classes_are_values(cls: type) -> None:
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
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
