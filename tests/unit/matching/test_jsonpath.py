import pytest

from helio_proxy.matching.jsonpath import PathError, parse_path

ARGS = {
    "amount": 1200,
    "customer": {"id": "c-1", "tier": "gold"},
    "items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 7}],
    "a.b": "dotted key",
    "empty": None,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.amount", [1200]),
        ("amount", [1200]),
        ("$.customer.tier", ["gold"]),
        ("customer.tier", ["gold"]),
        ("$.items[0].sku", ["A"]),
        ("$.items[1].qty", [7]),
        ("$.items[5].sku", []),
        ("$.items[*].sku", ["A", "B"]),
        ("$.items.*.qty", [1, 7]),
        ("$.customer[*]", ["c-1", "gold"]),
        ("$['a.b']", ["dotted key"]),
        ('$["a.b"]', ["dotted key"]),
        ("$.missing", []),
        ("$.amount.deeper", []),
        ("$.empty", [None]),
    ],
)
def test_paths_resolve_to_every_value_they_reach(path: str, expected: list[object]) -> None:
    assert parse_path(path).resolve(ARGS) == expected


def test_an_index_on_an_object_or_a_key_on_an_array_reaches_nothing() -> None:
    assert parse_path("$.customer[0]").resolve(ARGS) == []
    assert parse_path("$.items.sku").resolve(ARGS) == []


@pytest.mark.parametrize(
    "path",
    ["$", "$..sku", "$.items[-1]", "$.items[?(@.qty>1)]", "$.items[0:2]", "$.a..b", "$.", "$.a[", "$x"],
)
def test_malformed_or_unsupported_paths_are_rejected(path: str) -> None:
    with pytest.raises(PathError):
        parse_path(path)
