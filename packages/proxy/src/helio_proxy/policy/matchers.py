"""Compiling a rule's ``match`` into one predicate over (call, tool hints).

Everything that can be worked out from the config alone (globs, paths, regexes, the
``environment`` comparison) is done once here, so evaluation is a chain of closures.

Input conditions (``$.path: {op: value}``):

* ``eq`` / ``in``: JSON equality. Numbers compare by value (``1 == 1.0``), but a boolean never
  equals a number and a string never equals a number.
* ``neq`` / ``not_in``: the field must be present and differ.
* ``gt`` / ``gte`` / ``lt`` / ``lte``: JSON numbers only, compared exactly as ``Decimal``; a
  boolean or a numeric string (``"1000"``) never matches.
* ``contains``: substring of a string, or an exact string element of an array.
* ``regex``: ``re.search`` on a string (vetted at load, see :mod:`.regex_safety`).
* ``exists``: whether the path reaches anything.

Operators on one path are ANDed. With a wildcard (``$.items[*].sku``) the condition holds when
at least ONE reached value satisfies all its operators; ``exists: false`` holds when none is
reached. A call that sent no ``arguments`` matches no rule that has ``input`` conditions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, cast

from helio_proxy.config.policies import Condition, Match
from helio_proxy.policy.facts import CallFacts, Hints
from helio_proxy.policy.glob import compile_glob
from helio_proxy.policy.jsonpath import parse_path
from helio_proxy.policy.regex_safety import check_regex

Predicate = Callable[[CallFacts, Hints], bool]
ValueTest = Callable[[Any], bool]

HINT_NAMES: Final = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


def _always(_call: CallFacts, _hints: Hints) -> bool:
    return True


def _never(_call: CallFacts, _hints: Hints) -> bool:
    return False


def as_decimal(value: Any) -> Decimal | None:
    """A JSON number as an exact ``Decimal``; ``None`` for anything else (bools and strings too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr() is the shortest text that round-trips, i.e. the number as the JSON said it.
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    return None


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: no bool/number or string/number coercion; numbers by value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    left, right = as_decimal(a), as_decimal(b)
    if left is not None or right is not None:
        return left is not None and right is not None and left == right
    if isinstance(a, list) and isinstance(b, list):
        xs, ys = cast(list[Any], a), cast(list[Any], b)
        return len(xs) == len(ys) and all(json_equal(x, y) for x, y in zip(xs, ys, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        ma, mb = cast(dict[str, Any], a), cast(dict[str, Any], b)
        return ma.keys() == mb.keys() and all(json_equal(ma[k], mb[k]) for k in ma)
    return type(a) is type(b) and bool(a == b)  # pyright: ignore[reportUnknownArgumentType]


def _numeric(bound: Decimal, compare: Callable[[Decimal, Decimal], bool]) -> ValueTest:
    def test(value: Any) -> bool:
        number = as_decimal(value)
        return number is not None and compare(number, bound)

    return test


def _contains(needle: str) -> ValueTest:
    def test(value: Any) -> bool:
        if isinstance(value, str):
            return needle in value
        if isinstance(value, list):
            return any(isinstance(item, str) and item == needle for item in cast(list[Any], value))
        return False

    return test


def _value_tests(condition: Condition) -> list[ValueTest]:
    given = condition.model_fields_set
    tests: list[ValueTest] = []
    if "eq" in given:
        expected = condition.eq
        tests.append(lambda v: json_equal(v, expected))
    if "neq" in given:
        unexpected = condition.neq
        tests.append(lambda v: not json_equal(v, unexpected))
    for name, compare in (
        ("gt", Decimal.__gt__),
        ("gte", Decimal.__ge__),
        ("lt", Decimal.__lt__),
        ("lte", Decimal.__le__),
    ):
        bound = getattr(condition, name)
        if bound is not None:
            tests.append(_numeric(bound, compare))
    if condition.contains is not None:
        tests.append(_contains(condition.contains))
    if condition.regex is not None:
        search = check_regex(condition.regex).search
        tests.append(lambda v: isinstance(v, str) and search(v) is not None)
    if condition.in_ is not None:
        options = list(condition.in_)
        tests.append(lambda v: any(json_equal(v, option) for option in options))
    if condition.not_in is not None:
        excluded = list(condition.not_in)
        tests.append(lambda v: not any(json_equal(v, option) for option in excluded))
    return tests


def compile_condition(path_text: str, condition: Condition) -> Callable[[Mapping[str, Any]], bool]:
    """A test over the call's arguments for one ``path: {operators}`` entry."""
    path = parse_path(path_text)
    resolve = path.resolve
    tests = _value_tests(condition)
    exists = condition.exists

    def holds(arguments: Mapping[str, Any]) -> bool:
        values = resolve(arguments)
        if exists is not None and bool(values) != exists:
            return False
        if not tests:
            return True
        return any(all(test(value) for test in tests) for value in values)

    return holds


def _input_predicate(conditions: Mapping[str, Condition]) -> Predicate:
    checks = [compile_condition(path, condition) for path, condition in conditions.items()]

    def matches(call: CallFacts, _hints: Hints) -> bool:
        arguments = call.arguments
        if arguments is None:
            return False
        return all(check(arguments) for check in checks)

    return matches


def _all(predicates: list[Predicate]) -> Predicate:
    if not predicates:
        return _always
    if len(predicates) == 1:
        return predicates[0]
    return lambda call, hints: all(p(call, hints) for p in predicates)


def compile_match(match: Match, *, environment: str | None) -> Predicate:
    """One predicate for a ``match`` block (all of its conditions ANDed)."""
    if match.metadata is not None:
        return _never  # adapter metadata is never present on an MCP call
    if match.environment is not None and match.environment != environment:
        return _never
    predicates: list[Predicate] = []
    if match.tool is not None:
        tool_matches = compile_glob(match.tool)
        predicates.append(lambda call, _hints: tool_matches(call.tool))
    if match.upstreams is not None:
        upstreams = frozenset(match.upstreams)
        predicates.append(lambda call, _hints: call.upstream in upstreams)
    if match.annotations is not None:
        wanted = tuple(
            (name, value) for name in HINT_NAMES if (value := getattr(match.annotations, name)) is not None
        )
        predicates.append(lambda _call, hints: all(getattr(hints, n) is v for n, v in wanted))
    if match.input:
        predicates.append(_input_predicate(match.input))
    if match.any_ is not None:
        options = [compile_match(sub, environment=environment) for sub in match.any_]
        predicates.append(lambda call, hints: any(p(call, hints) for p in options))
    if match.all_ is not None:
        predicates.append(_all([compile_match(sub, environment=environment) for sub in match.all_]))
    if match.not_ is not None:
        inner = compile_match(match.not_, environment=environment)
        predicates.append(lambda call, hints: not inner(call, hints))
    return _all(predicates)


def tool_prefilter(match: Match) -> Callable[[str], bool] | None:
    """The top-level tool glob of a match, usable to pre-select rules by tool name."""
    if match.metadata is not None or match.tool is None:
        return None
    return compile_glob(match.tool)
