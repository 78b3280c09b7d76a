"""Compiling a rule's ``match`` into one predicate over (call, tool hints).

Everything that can be worked out from the config alone (globs, paths, regexes, the
``environment`` comparison) is done once here, so evaluation is a chain of closures.

Input conditions (``$.path: {op: value}``):

* ``eq`` / ``in``: JSON equality. Numbers compare by value (``1 == 1.0``), a boolean never
  equals a number, and a string equals a number operand only when it is a numeric string that
  spells that number (``"5000"`` equals ``5000``; see :func:`numeric_string`).
* ``neq`` / ``not_in``: the field must be present and differ (by the same equality).
* ``gt`` / ``gte`` / ``lt`` / ``lte``: a finite JSON number, or a numeric string, compared
  exactly as ``Decimal``. Any other value (a boolean, ``null``, ``NaN``/``Infinity``, a string
  that is not a plain decimal number, an array, an object) leaves the comparison *undecided*.
* ``contains``: substring of a string, or an exact string element of an array.
* ``regex``: ``re.search`` on a string (vetted at load, see :mod:`.regex_safety`).
* ``exists``: whether the path reaches anything.

Operators on one path are ANDed. With a wildcard (``$.items[*].sku``) the condition holds when
at least ONE reached value satisfies all its operators; ``exists: false`` holds when none is
reached. A call that sent no ``arguments`` matches no rule that has ``input`` conditions.

An undecided comparison resolves to ``undecided_matches`` (the caller's choice, by the rule's
action), flipped under each ``not``: a restrictive rule applies to a value it cannot compare
and a permissive one does not, so a string such as ``"5_000"`` or ``"NaN"``, which an upstream
may read as a number, cannot carry a call past a restrictive rule to a permissive one. This is
exactly Kleene's three-valued logic with the final *unknown* resolved that way, because
``any``/``all``/``[*]`` are monotone and only ``not`` negates.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final, cast

from helio_proxy.config.policies import AnnotationMatch, Condition, Match
from helio_proxy.matching.glob import compile_glob
from helio_proxy.matching.jsonpath import Segment, Wildcard, parse_path
from helio_proxy.matching.regex_safety import check_regex
from helio_proxy.policy.facts import CallFacts, Hints

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


_NUMERIC_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A plain decimal number: optional sign, ASCII digits, optional fraction, optional exponent."""

_ASCII_SPACE: Final = " \t\n\r\f\v"


def numeric_string(value: str) -> Decimal | None:
    """The number a string spells, or ``None`` when it is not a plain decimal number.

    Accepted, because every common parser that reads them at all (Python, JavaScript's
    ``Number``, pydantic; JSON takes the subset without the extras) reads the same number:
    ASCII whitespace around, a leading ``+`` or ``-``, leading zeros, a bare leading or trailing
    ``.``, an ``e``/``E`` exponent: ``" 5000 "``, ``"+5e3"``, ``"012"``, ``".5"``. Refused,
    because parsers disagree on them or they are not finite: ``"0x10"``, ``"5_000"``,
    ``"1,000"``, ``"NaN"``, ``"Infinity"``, non-ASCII digits, and any
    other text.
    """
    text = value.strip(_ASCII_SPACE)
    if not _NUMERIC_TEXT.fullmatch(text):
        return None
    return Decimal(text)


def comparable_number(value: Any) -> Decimal | None:
    """The number a numeric operator compares: a finite JSON number or a numeric string."""
    if isinstance(value, str):
        return numeric_string(value)
    return as_decimal(value)


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


_MAX_EXACT_INT: Final = 2**53
"""Integers up to this are exact doubles: a float compares with them exactly as its JSON text would."""


def _numeric(bound: Decimal, compare: Callable[[Any, Any], bool], undecided: bool) -> ValueTest:
    """An ordering test; a value it cannot compare answers ``undecided``."""
    if bound == bound.to_integral_value() and abs(bound) < _MAX_EXACT_INT:
        # Fast path for whole-number bounds (the usual case): no Decimal per call.
        whole = int(bound)

        def test_whole(value: Any) -> bool:
            if isinstance(value, bool):
                return undecided
            if isinstance(value, int):
                return compare(value, whole)
            if isinstance(value, float):
                return compare(value, whole) if math.isfinite(value) else undecided
            number = comparable_number(value)
            return undecided if number is None else compare(number, bound)

        return test_whole

    def test(value: Any) -> bool:
        number = comparable_number(value)
        return undecided if number is None else compare(number, bound)

    return test


def _equals(expected: Any) -> ValueTest:
    """A JSON-equality test specialised on the expected value's type (decided for every value)."""
    if isinstance(expected, str):
        return lambda v: type(v) is str and v == expected
    if isinstance(expected, bool) or expected is None:
        return lambda v: v is expected
    number = as_decimal(expected)
    if number is not None:

        def same_number(value: Any) -> bool:
            if type(value) is str:
                spelled = numeric_string(value)
                return spelled is not None and spelled == number
            return json_equal(value, expected)

        return same_number
    return lambda v: json_equal(v, expected)


def _one_of(options: list[Any]) -> ValueTest:
    if all(isinstance(option, str) for option in options):
        members = frozenset(options)
        return lambda v: type(v) is str and v in members
    tests = [_equals(option) for option in options]

    def any_of(value: Any) -> bool:
        for test in tests:  # noqa: SIM110 - see _combine
            if test(value):
                return True
        return False

    return any_of


def _contains(needle: str) -> ValueTest:
    def test(value: Any) -> bool:
        if isinstance(value, str):
            return needle in value
        if isinstance(value, list):
            return any(isinstance(item, str) and item == needle for item in cast(list[Any], value))
        return False

    return test


def _value_tests(condition: Condition, undecided: bool) -> list[ValueTest]:
    given = condition.model_fields_set
    tests: list[ValueTest] = []
    if "eq" in given:
        tests.append(_equals(condition.eq))
    if "neq" in given:
        same = _equals(condition.neq)
        tests.append(lambda v: not same(v))
    for name, compare in (
        ("gt", operator.gt),
        ("gte", operator.ge),
        ("lt", operator.lt),
        ("lte", operator.le),
    ):
        bound = getattr(condition, name)
        if bound is not None:
            tests.append(_numeric(bound, compare, undecided))
    if condition.contains is not None:
        tests.append(_contains(condition.contains))
    if condition.regex is not None:
        search = check_regex(condition.regex).search
        tests.append(lambda v: isinstance(v, str) and search(v) is not None)
    if condition.in_ is not None:
        tests.append(_one_of(list(condition.in_)))
    if condition.not_in is not None:
        listed = _one_of(list(condition.not_in))
        tests.append(lambda v: not listed(v))
    return tests


def _combine(tests: list[ValueTest]) -> ValueTest:
    # Hot-path closures here use explicit loops: all()/any() over a generator costs about twice
    # as much per rule evaluated.
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda v: first(v) and second(v)

    def every(value: Any) -> bool:
        for test in tests:  # noqa: SIM110 - see _combine
            if not test(value):
                return False
        return True

    return every


_ABSENT: Final = object()


def _walker(segments: tuple[Segment, ...], test: ValueTest) -> ValueTest:
    """Whether any value ``segments`` reach from a node passes ``test`` (stops at the first)."""
    if not segments:
        return test
    head, rest = segments[0], _walker(segments[1:], test)
    # The closures below run per rule per call: no cast() calls, just isinstance checks.
    if isinstance(head, Wildcard):

        def each(node: Any) -> bool:
            items: Iterable[Any]
            if isinstance(node, list):
                items = node  # pyright: ignore[reportUnknownVariableType]
            elif isinstance(node, dict):
                items = node.values()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            else:
                return False
            for item in items:  # noqa: SIM110  # pyright: ignore[reportUnknownVariableType]
                if rest(item):
                    return True
            return False

        return each
    if isinstance(head, int):
        index = head

        def at(node: Any) -> bool:
            return isinstance(node, list) and index < len(node) and rest(node[index])  # pyright: ignore[reportUnknownArgumentType]

        return at
    key = head

    def child(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        value: Any = node.get(key, _ABSENT)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return value is not _ABSENT and rest(value)

    return child


def _present(_value: Any) -> bool:
    return True


def compile_condition(
    path_text: str, condition: Condition, *, undecided_matches: bool
) -> Callable[[Mapping[str, Any]], bool]:
    """A test over the call's arguments for one ``path: {operators}`` entry.

    ``undecided_matches`` is what a numeric comparison on a value that is not a number counts as.
    """
    path = parse_path(path_text)
    tests = _value_tests(condition, undecided_matches)
    exists = condition.exists
    test = _combine(tests) if tests else None
    if exists is False:
        if test is not None:
            return lambda _arguments: False  # nothing to test when nothing may be there
        reaches = _walker(path.segments, _present)
        return lambda arguments: not reaches(arguments)
    # A value that passes the tests exists, so `exists: true` adds nothing beyond reaching one.
    final = test or _present
    head = path.segments[0]
    if len(path.segments) == 1 and isinstance(head, str):
        key = head

        def top_level(arguments: Mapping[str, Any]) -> bool:
            value = arguments.get(key, _ABSENT)
            return value is not _ABSENT and final(value)

        return top_level
    return _walker(path.segments, final)


def _input_predicate(conditions: Mapping[str, Condition], undecided: bool) -> Predicate:
    # ANDed, so the order is free: plain paths first, wildcards (which walk arrays) last.
    ordered = sorted(conditions.items(), key=lambda item: parse_path(item[0]).has_wildcard)
    checks = [compile_condition(path, condition, undecided_matches=undecided) for path, condition in ordered]

    def matches(call: CallFacts, _hints: Hints) -> bool:
        arguments = call.arguments
        if arguments is None:
            return False
        for check in checks:  # noqa: SIM110 - see _combine
            if not check(arguments):
                return False
        return True

    return matches


def _all(predicates: list[Predicate]) -> Predicate:
    if not predicates:
        return _always
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda call, hints: first(call, hints) and second(call, hints)

    def every(call: CallFacts, hints: Hints) -> bool:
        for predicate in predicates:  # noqa: SIM110 - see _combine
            if not predicate(call, hints):
                return False
        return True

    return every


def _hints_test(annotations: AnnotationMatch) -> Callable[[Hints], bool]:
    wanted = tuple((name, value) for name in HINT_NAMES if (value := getattr(annotations, name)) is not None)
    return lambda hints: all(getattr(hints, name) is value for name, value in wanted)


def compile_match(
    match: Match, *, environment: str | None, undecided_matches: bool, static_done: bool = False
) -> Predicate:
    """One predicate for a ``match`` block (all of its conditions ANDed).

    ``undecided_matches``: whether a comparison that cannot be decided (``gt: 1000`` on ``"abc"``,
    ``true`` or ``NaN``) lets the match hold. Pass ``True`` for a rule whose action restricts
    the call (anything but a plain ``allow``) and ``False`` for a permissive one; the sense flips
    under ``not``. With ``static_done`` the top-level ``tool`` and ``annotations`` are left out:
    the caller checks them through :func:`static_filter` instead.
    """
    if match.metadata is not None:
        return _never  # adapter metadata is never present on an MCP call
    if match.environment is not None and match.environment != environment:
        return _never
    undecided = undecided_matches
    predicates: list[Predicate] = []
    if match.tool is not None and not static_done:
        tool_matches = compile_glob(match.tool)
        predicates.append(lambda call, _hints: tool_matches(call.tool))
    if match.upstreams is not None:
        upstreams = frozenset(match.upstreams)
        predicates.append(lambda call, _hints: call.upstream in upstreams)
    if match.agent is not None:
        agent_matches = compile_glob(match.agent)
        predicates.append(lambda call, _hints: call.agent is not None and agent_matches(call.agent))
    if match.annotations is not None:
        wanted = tuple(
            (name, value) for name in HINT_NAMES if (value := getattr(match.annotations, name)) is not None
        )
        predicates.append(lambda _call, hints: all(getattr(hints, n) is v for n, v in wanted))
    if match.input:
        predicates.append(_input_predicate(match.input, undecided))
    if match.any_ is not None:
        options = [
            compile_match(sub, environment=environment, undecided_matches=undecided) for sub in match.any_
        ]
        predicates.append(lambda call, hints: any(p(call, hints) for p in options))
    if match.all_ is not None:
        predicates.append(
            _all(
                [
                    compile_match(sub, environment=environment, undecided_matches=undecided)
                    for sub in match.all_
                ]
            )
        )
    if match.not_ is not None:
        inner = compile_match(match.not_, environment=environment, undecided_matches=not undecided)
        predicates.append(lambda call, hints: not inner(call, hints))
    return _all(predicates)


def static_filter(match: Match) -> Callable[[str, Hints], bool]:
    """The part of a match that depends only on the tool (name and baseline hints).

    Its answer is the same for every call of one tool, so the engine evaluates it once per
    (tool, hints) and keeps a list of candidate rules.
    """
    if match.metadata is not None:
        return lambda _tool, _hints: False
    tool_matches = compile_glob(match.tool) if match.tool is not None else None
    hints_match = _hints_test(match.annotations) if match.annotations is not None else None
    if tool_matches is None:
        if hints_match is None:
            return lambda _tool, _hints: True
        return lambda _tool, hints: hints_match(hints)
    if hints_match is None:
        return lambda tool, _hints: tool_matches(tool)
    return lambda tool, hints: tool_matches(tool) and hints_match(hints)
