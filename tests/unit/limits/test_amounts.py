"""Amounts are exact decimals read from the call's own JSON text; anything else is invalid."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from helio_proxy.limits.amounts import ExactArguments, InvalidAmount, read_amount
from helio_proxy.matching.jsonpath import parse_path


def amount_of(raw_arguments: str, path: str = "$.amount") -> Decimal | InvalidAmount:
    raw = f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{raw_arguments}}}}}'
    arguments: Any = json.loads(raw)["params"]["arguments"]
    return read_amount(parse_path(path), ExactArguments(arguments, raw.encode()))


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"amount": 100}', Decimal(100)),
        ('{"amount": 0}', Decimal(0)),
        ('{"amount": 12.50}', Decimal("12.50")),
        ('{"amount": 1e3}', Decimal(1000)),
        # A float would round this to 12345678901234568; the JSON text is kept instead.
        ('{"amount": 12345678901234567.89}', Decimal("12345678901234567.89")),
    ],
)
def test_a_json_number_is_read_exactly(arguments: str, expected: Decimal) -> None:
    assert amount_of(arguments) == expected


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ("{}", "missing"),
        ('{"amount": null}', "not_a_number"),
        ('{"amount": "100"}', "not_a_number"),
        ('{"amount": true}', "not_a_number"),
        ('{"amount": false}', "not_a_number"),
        ('{"amount": [100]}', "not_a_number"),
        ('{"amount": {"value": 100}}', "not_a_number"),
        ('{"amount": NaN}', "not_finite"),
        ('{"amount": Infinity}', "not_finite"),
        ('{"amount": -Infinity}', "not_finite"),
        ('{"amount": 1e400}', "not_finite"),
        ('{"amount": -0.01}', "negative"),
        ('{"amount": -5}', "negative"),
    ],
)
def test_anything_but_a_finite_non_negative_number_is_invalid(arguments: str, code: str) -> None:
    found = amount_of(arguments)
    assert isinstance(found, InvalidAmount)
    assert found.code == code
    assert "$.amount" in found.detail


def test_a_wildcard_path_charges_the_sum_of_what_it_reaches() -> None:
    arguments = '{"items": [{"price": 0.1}, {"price": 0.2}]}'
    assert amount_of(arguments, "$.items[*].price") == Decimal("0.3")
    invalid = amount_of('{"items": [{"price": 1}, {"price": "2"}]}', "$.items[*].price")
    assert isinstance(invalid, InvalidAmount)
    assert invalid.code == "not_a_number"


def test_without_the_raw_request_a_float_is_read_from_its_shortest_text() -> None:
    found = read_amount(parse_path("$.amount"), ExactArguments({"amount": 0.1}, b""))
    assert found == Decimal("0.1")
