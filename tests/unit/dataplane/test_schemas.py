"""Schema validation: every error with its JSON path, compiled once per baseline fingerprint."""

from __future__ import annotations

from typing import Any

from helio_proxy.dataplane.schemas import ValidatorCache, json_path

TOOL: dict[str, Any] = {
    "name": "pay",
    "inputSchema": {
        "type": "object",
        "properties": {
            "amount": {"type": "number"},
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"sku": {"type": "string"}}},
            },
        },
        "required": ["amount"],
    },
}


def test_every_violation_is_reported_with_its_path_and_expectation() -> None:
    cache = ValidatorCache()
    errors = cache.errors("sha1", TOOL, "inputSchema", {"amount": "5000", "items": [{"sku": 7}]})
    assert [(e.path, e.keyword) for e in errors] == [("$.amount", "type"), ("$.items[0].sku", "type")]
    assert errors[0].expected == '"5000" is not of type "number"'
    assert [e.as_dict()["path"] for e in cache.errors("sha1", TOOL, "inputSchema", {})] == ["$"]


def test_a_validator_is_compiled_once_per_fingerprint() -> None:
    cache = ValidatorCache()
    for _ in range(3):
        assert cache.errors("sha1", TOOL, "inputSchema", {"amount": 1}) == []
    assert cache.compilations == 1
    changed = {**TOOL, "inputSchema": {"type": "object", "required": ["currency"]}}
    assert [e.keyword for e in cache.errors("sha2", changed, "inputSchema", {"amount": 1})] == ["required"]
    assert cache.compilations == 2


def test_a_tool_without_a_usable_schema_is_not_enforced() -> None:
    cache = ValidatorCache()
    assert cache.errors("a", {"name": "x"}, "inputSchema", {"anything": 1}) == []
    assert cache.errors("b", {"name": "x", "inputSchema": {"type": 12}}, "inputSchema", {"a": 1}) == []


def test_json_paths_quote_keys_that_are_not_identifiers() -> None:
    assert json_path(["items", 0, "sku"]) == "$.items[0].sku"
    assert json_path(["a b", 1]) == '$["a b"][1]'
