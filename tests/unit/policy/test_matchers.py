"""Every input operator, on present, absent and mistyped fields."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import pytest

from helio_proxy.policy import Allow, CallFacts, CompiledPolicy, Deny
from helio_proxy.policy.matchers import numeric_string

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
        # eq: JSON equality, numbers by value; a numeric string equals the number it spells
        ({"$.x": {"eq": "a"}}, {"x": "a"}, True),
        ({"$.x": {"eq": "a"}}, {"x": "b"}, False),
        ({"$.x": {"eq": 1}}, {"x": 1.0}, True),
        ({"$.x": {"eq": 1}}, {"x": "1"}, True),
        ({"$.x": {"eq": 1}}, {"x": " 1.0 "}, True),
        ({"$.x": {"eq": 1}}, {"x": "0x1"}, False),
        ({"$.x": {"eq": "1"}}, {"x": 1}, False),
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
        ({"$.x": {"neq": 1}}, {"x": "1"}, False),
        ({"$.x": {"neq": 1}}, {"x": "2"}, True),
        # numeric operators: numbers and numeric strings, exact; anything else is undecided,
        # which a deny rule counts as a match
        ({"$.x": {"gt": 1000}}, {"x": 1000.5}, True),
        ({"$.x": {"gt": 1000}}, {"x": 1000}, False),
        ({"$.x": {"gte": 1000}}, {"x": 1000}, True),
        ({"$.x": {"lt": 10}}, {"x": 9.99}, True),
        ({"$.x": {"lte": 10}}, {"x": 10.0}, True),
        ({"$.x": {"lte": 10}}, {"x": 10.01}, False),
        ({"$.x": {"gt": 1000}}, {"x": "5000"}, True),
        ({"$.x": {"gt": 1000}}, {"x": "999"}, False),
        ({"$.x": {"lt": 1000}}, {"x": "5"}, True),
        ({"$.x": {"gt": 0}}, {"x": True}, True),
        ({"$.x": {"lt": 1}}, {"x": False}, True),
        ({"$.x": {"gt": 0}}, {"x": None}, True),
        ({"$.x": {"gt": 0}}, {"x": [5]}, True),
        ({"$.x": {"gt": 0}}, {}, False),
        ({"$.x": {"gt": 0.1}}, {"x": 0.1}, False),
        ({"$.x": {"gte": 0.3}}, {"x": 0.30000000000000004}, True),
        ({"$.x": {"gt": 100, "lt": 200}}, {"x": 150}, True),
        ({"$.x": {"gt": 100, "lt": 200}}, {"x": 250}, False),
        ({"$.x": {"gt": 0}}, {"x": float("inf")}, True),
        ({"$.x": {"lt": 0}}, {"x": float("nan")}, True),
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
        ({"$.x": {"in": [1, 2]}}, {"x": "2"}, True),
        ({"$.x": {"in": [1, "b"]}}, {"x": "b"}, True),
        ({"$.x": {"in": [1, "b"]}}, {"x": "c"}, False),
        ({"$.x": {"not_in": [1, 2]}}, {"x": "2"}, False),
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


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("5000", Decimal(5000)),
        (" 5000\n", Decimal(5000)),
        ("+5000", Decimal(5000)),
        ("-12.50", Decimal("-12.50")),
        ("012", Decimal(12)),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("1e3", Decimal(1000)),
        ("2.5E-1", Decimal("0.25")),
        ("0x10", None),
        ("5_000", None),
        ("1,000", None),
        ("5000 USD", None),
        ("NaN", None),
        ("Infinity", None),
        ("-inf", None),
        ("\u0665", None),  # ARABIC-INDIC DIGIT FIVE: Python's int() reads it, JSON does not
        ("\u00a05000", None),  # a non-breaking space is not ASCII whitespace
        ("", None),
        (".", None),
        ("e3", None),
    ],
)
def test_a_numeric_string_is_a_plain_decimal_number_every_parser_reads_the_same_way(
    text: str, number: Decimal | None
) -> None:
    assert numeric_string(text) == number


def decision_for(make_policy: PolicyFactory, rule: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """The rule that decides ``t(arguments)``: ``"r"``, or ``"fallback"`` (a catch-all allow)."""
    policy = make_policy(
        [
            {"name": "r", "match": {"tool": "t"}, **rule},
            {"name": "fallback", "match": {"tool": "t"}, "action": "allow"},
        ]
    )
    return policy.decide(CallFacts("t", arguments)).rule


AMOUNT_OVER_1000: Final = {"input": {"$.amount": {"gt": 1000}}}
UNCOMPARABLE: Final = ["lots", "5_000", "0x2000", "NaN", "Infinity", True, None, [5000], {"v": 5000}]


@pytest.mark.parametrize("value", UNCOMPARABLE)
@pytest.mark.parametrize(
    "restrictive",
    [
        {"action": "deny"},
        {"action": "require_approval", "approval": {"channel": "dashboard"}},
        {"action": "dry_run"},
        {"action": "rate_limit", "limits": {"max_calls": 1, "window": "1m"}},
        {"requires": ["lookup"]},
    ],
)
def test_a_value_a_numeric_operator_cannot_compare_does_not_escape_a_restrictive_rule(
    make_policy: PolicyFactory, restrictive: dict[str, Any], value: Any
) -> None:
    rule = {**restrictive, "match": {"tool": "t", **AMOUNT_OVER_1000}}
    assert decision_for(make_policy, rule, {"amount": value}) == "r"
    assert decision_for(make_policy, rule, {"amount": 10}) == "fallback"


@pytest.mark.parametrize("value", UNCOMPARABLE)
def test_a_value_a_numeric_operator_cannot_compare_never_satisfies_an_allow_rule(
    make_policy: PolicyFactory, value: Any
) -> None:
    small = {"name": "small", "match": {"tool": "t", "input": {"$.amount": {"lte": 1000}}}, "action": "allow"}
    policy = make_policy([small, {"name": "rest", "match": {"tool": "t"}, "action": "deny"}])
    assert policy.decide(CallFacts("t", {"amount": value})).rule == "rest"
    assert policy.decide(CallFacts("t", {"amount": "999.99"})).rule == "small"


@pytest.mark.parametrize(
    ("rule", "arguments", "decider"),
    [
        # `not` flips the sense: an allow rule "unless over 1000" does not take "lots"...
        (
            {"match": {"tool": "t", "not": AMOUNT_OVER_1000}, "action": "allow"},
            {"amount": "lots"},
            "fallback",
        ),
        ({"match": {"tool": "t", "not": AMOUNT_OVER_1000}, "action": "allow"}, {"amount": "20"}, "r"),
        # ...and a deny rule "unless at most 1000" does.
        (
            {"match": {"tool": "t", "not": {"input": {"$.amount": {"lte": 1000}}}}, "action": "deny"},
            {"amount": "lots"},
            "r",
        ),
        (
            {"match": {"tool": "t", "not": {"not": AMOUNT_OVER_1000}}, "action": "deny"},
            {"amount": "lots"},
            "r",
        ),
        # any/all: a decided branch still decides
        (
            {
                "match": {"tool": "t", "any": [AMOUNT_OVER_1000, {"input": {"$.vip": {"eq": True}}}]},
                "action": "allow",
            },
            {"amount": "lots", "vip": True},
            "r",
        ),
        (
            {
                "match": {"tool": "t", "all": [AMOUNT_OVER_1000, {"input": {"$.vip": {"eq": True}}}]},
                "action": "deny",
            },
            {"amount": "lots", "vip": False},
            "fallback",
        ),
        # a wildcard: one uncomparable element is enough to hold a deny rule, and a decided one to pass an allow
        (
            {"match": {"tool": "t", "input": {"$.items[*].price": {"gt": 100}}}, "action": "deny"},
            {"items": [{"price": 5}, {"price": "n/a"}]},
            "r",
        ),
        (
            {"match": {"tool": "t", "input": {"$.items[*].price": {"lt": 100}}}, "action": "allow"},
            {"items": [{"price": "n/a"}, {"price": 5}]},
            "r",
        ),
        # an absent field is not undecided: it never satisfies a numeric operator
        ({"match": {"tool": "t", **AMOUNT_OVER_1000}, "action": "deny"}, {"other": 1}, "fallback"),
        # equality stays decided: "lots" is not 1000, whatever the action
        (
            {"match": {"tool": "t", "input": {"$.amount": {"eq": 1000}}}, "action": "deny"},
            {"amount": "lots"},
            "fallback",
        ),
    ],
)
def test_undecided_comparisons_flip_under_not_and_decided_branches_still_decide(
    make_policy: PolicyFactory, rule: dict[str, Any], arguments: dict[str, Any], decider: str
) -> None:
    assert decision_for(make_policy, rule, arguments) == decider
