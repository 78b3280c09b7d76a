"""Every input operator, on present, absent and mistyped fields."""

from collections.abc import Callable
from typing import Any

import pytest

from helio_proxy.policy import Allow, CallFacts, CompiledPolicy, Deny

PolicyFactory = Callable[..., CompiledPolicy]


def blocks(make_policy: PolicyFactory, condition: dict[str, Any], arguments: dict[str, Any] | None) -> bool:
    policy = make_policy(
        [{"name": "r", "match": {"tool": "t", "input": condition}, "action": "deny"}],
    )
    decision = policy.decide(CallFacts("t", arguments))
    assert isinstance(decision, Allow | Deny)
    return decision.blocks


@pytest.mark.parametrize(
    ("condition", "arguments", "expected"),
    [
        # eq: JSON equality, numbers by value, no coercion between types
        ({"$.x": {"eq": "a"}}, {"x": "a"}, True),
        ({"$.x": {"eq": "a"}}, {"x": "b"}, False),
        ({"$.x": {"eq": 1}}, {"x": 1.0}, True),
        ({"$.x": {"eq": 1}}, {"x": "1"}, False),
        ({"$.x": {"eq": 1}}, {"x": True}, False),
        ({"$.x": {"eq": True}}, {"x": 1}, False),
        ({"$.x": {"eq": True}}, {"x": True}, True),
        ({"$.x": {"eq": None}}, {"x": None}, True),
        ({"$.x": {"eq": None}}, {}, False),
        ({"$.x": {"eq": [1, "a"]}}, {"x": [1, "a"]}, True),
        ({"$.x": {"eq": {"k": 1}}}, {"x": {"k": 1}}, True),
        ({"$.x": {"eq": "a"}}, {}, False),
        # neq: present and different
        ({"$.x": {"neq": "a"}}, {"x": "b"}, True),
        ({"$.x": {"neq": "a"}}, {"x": "a"}, False),
        ({"$.x": {"neq": "a"}}, {}, False),
        ({"$.x": {"neq": 1}}, {"x": "1"}, True),
        # numeric operators: numbers only, exact
        ({"$.x": {"gt": 1000}}, {"x": 1000.5}, True),
        ({"$.x": {"gt": 1000}}, {"x": 1000}, False),
        ({"$.x": {"gte": 1000}}, {"x": 1000}, True),
        ({"$.x": {"lt": 10}}, {"x": 9.99}, True),
        ({"$.x": {"lte": 10}}, {"x": 10.0}, True),
        ({"$.x": {"lte": 10}}, {"x": 10.01}, False),
        ({"$.x": {"gt": 1000}}, {"x": "5000"}, False),
        ({"$.x": {"lt": 1000}}, {"x": "5"}, False),
        ({"$.x": {"gt": 0}}, {"x": True}, False),
        ({"$.x": {"lt": 1}}, {"x": False}, False),
        ({"$.x": {"gt": 0}}, {"x": None}, False),
        ({"$.x": {"gt": 0}}, {"x": [5]}, False),
        ({"$.x": {"gt": 0}}, {}, False),
        ({"$.x": {"gt": 0.1}}, {"x": 0.1}, False),
        ({"$.x": {"gte": 0.3}}, {"x": 0.30000000000000004}, True),
        ({"$.x": {"gt": 100, "lt": 200}}, {"x": 150}, True),
        ({"$.x": {"gt": 100, "lt": 200}}, {"x": 250}, False),
        ({"$.x": {"gt": 0}}, {"x": float("inf")}, False),
        # contains: substring, or exact array element
        ({"$.x": {"contains": "DROP"}}, {"x": "please DROP TABLE"}, True),
        ({"$.x": {"contains": "DROP"}}, {"x": "drop"}, False),
        ({"$.x": {"contains": "admin"}}, {"x": ["user", "admin"]}, True),
        ({"$.x": {"contains": "adm"}}, {"x": ["admin"]}, False),
        ({"$.x": {"contains": "1"}}, {"x": 1}, False),
        ({"$.x": {"contains": "a"}}, {}, False),
        # regex: search on strings only
        ({"$.x": {"regex": "^DROP\\s"}}, {"x": "DROP TABLE"}, True),
        ({"$.x": {"regex": "TABLE"}}, {"x": "DROP TABLE"}, True),
        ({"$.x": {"regex": "^1"}}, {"x": 1}, False),
        ({"$.x": {"regex": "x"}}, {}, False),
        # in / not_in
        ({"$.x": {"in": ["EUR", "GBP"]}}, {"x": "GBP"}, True),
        ({"$.x": {"in": ["EUR", "GBP"]}}, {"x": "USD"}, False),
        ({"$.x": {"in": [1, 2]}}, {"x": 2.0}, True),
        ({"$.x": {"in": [1, 2]}}, {"x": True}, False),
        ({"$.x": {"in": ["a"]}}, {}, False),
        ({"$.x": {"not_in": ["EUR", "GBP"]}}, {"x": "USD"}, True),
        ({"$.x": {"not_in": ["EUR", "GBP"]}}, {"x": "EUR"}, False),
        ({"$.x": {"not_in": ["EUR"]}}, {}, False),
        # exists
        ({"$.x": {"exists": True}}, {"x": None}, True),
        ({"$.x": {"exists": True}}, {}, False),
        ({"$.x": {"exists": False}}, {}, True),
        ({"$.x": {"exists": False}}, {"x": 0}, False),
        ({"$.a.b": {"exists": False}}, {"a": "not an object"}, True),
        # several paths are ANDed
        ({"$.x": {"eq": 1}, "$.y": {"eq": 2}}, {"x": 1, "y": 2}, True),
        ({"$.x": {"eq": 1}, "$.y": {"eq": 2}}, {"x": 1, "y": 3}, False),
    ],
)
def test_input_operators(
    make_policy: PolicyFactory, condition: dict[str, Any], arguments: dict[str, Any], expected: bool
) -> None:
    assert blocks(make_policy, condition, arguments) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"$.items[*].sku": {"eq": "B"}}, True),
        ({"$.items[*].sku": {"eq": "Z"}}, False),
        ({"$.items[*].qty": {"gt": 5}}, True),
        ({"$.items[*].qty": {"gt": 5, "lt": 7}}, False),
        ({"$.items[*].qty": {"gt": 0, "lt": 2}}, True),
        ({"$.items[*].sku": {"neq": "A"}}, True),
        ({"$.items[*].note": {"exists": True}}, False),
        ({"$.items[*].note": {"exists": False}}, True),
        ({"$.items[0].sku": {"eq": "A"}}, True),
        ({"$.items[1].sku": {"eq": "A"}}, False),
        ({"$.items[9].sku": {"exists": False}}, True),
    ],
)
def test_a_wildcard_condition_holds_when_any_single_element_satisfies_all_its_operators(
    make_policy: PolicyFactory, condition: dict[str, Any], expected: bool
) -> None:
    arguments = {"items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 7}]}
    assert blocks(make_policy, condition, arguments) is expected


def test_a_call_without_arguments_matches_no_rule_with_input_conditions_not_even_exists_false(
    make_policy: PolicyFactory,
) -> None:
    assert blocks(make_policy, {"$.x": {"exists": False}}, None) is False
    assert blocks(make_policy, {"$.x": {"exists": False}}, {}) is True


@pytest.mark.parametrize(
    ("condition", "arguments", "expected"),
    [
        ({"$.x": {"exists": False, "eq": 1}}, {}, False),
        ({"$.x": {"exists": True, "eq": 1}}, {"x": 1}, True),
        ({"$.meta[*]": {"eq": "vip"}}, {"meta": {"a": "x", "b": "vip"}}, True),
        ({"$.meta[*]": {"eq": "vip"}}, {"meta": "vip"}, False),
        ({"$.rows[*][0]": {"gt": 5}}, {"rows": [[1, 2], [9, 0]]}, True),
        ({"$.a.b.c": {"eq": 1}}, {"a": {"b": {"c": 1}}}, True),
        ({"$.a.b.c": {"eq": 1}}, {"a": {"b": [1]}}, False),
        ({"$.x": {"gt": 9007199254740993}}, {"x": 9007199254740994}, True),
        ({"$.x": {"gt": 1000}}, {"x": 1000.0000000000001}, True),
        ({"$.x": {"lt": 2.5}}, {"x": 2.4999999999999996}, True),
    ],
)
def test_paths_exists_and_number_edge_cases(
    make_policy: PolicyFactory, condition: dict[str, Any], arguments: dict[str, Any], expected: bool
) -> None:
    assert blocks(make_policy, condition, arguments) is expected
