"""Rejecting regular expressions that can backtrack catastrophically, before they ever run.

``re`` is a backtracking engine: a pattern such as ``(a+)+$`` takes exponential time on
``"aaaa…b"``, and an agent controls the arguments a rule's ``regex`` is applied to. Patterns
are vetted on the parse tree ``re`` itself builds, and two shapes are refused:

* **nested quantifiers**: a group repeated without bound around a variable-length repetition,
  or repeated more than once around an unbounded one (``(a+)+``, ``(\\w*,?)*``, ``(a{1,3})+``,
  ``(.*a){12}``);
* **ambiguous alternation under a quantifier**: an unbounded repeat over alternatives that
  can start with the same character or match the empty string (``(a|ab)*``, ``(\\d|1)+``,
  ``(a|a)*``, ``(x|y?)+``).

The check is conservative: a few harmless patterns are refused too. Possessive quantifiers
(``a*+``) and atomic groups (``(?>...)``) never backtrack and are always accepted, so they are
the usual fix. Polynomial cases such as ``\\d+\\d+`` are accepted.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

# The parse tree of ``re`` itself (private modules with no type information, stable since 3.11).
sre: Any = importlib.import_module("re._constants")
_parser: Any = importlib.import_module("re._parser")

MAXREPEAT: Final[Any] = sre.MAXREPEAT

_SAMPLE: Final = range(0x250)
"""Code points tried when comparing character sets (ASCII, Latin-1 and Latin Extended)."""


class UnsafeRegex(ValueError):
    """The pattern does not compile, or can backtrack catastrophically."""


@dataclass(frozen=True, slots=True)
class _Chars:
    """The set of characters a piece can start with, as a predicate plus its literal members."""

    test: Callable[[int], bool]
    literals: frozenset[int] = frozenset()

    def overlaps(self, other: _Chars) -> bool:
        candidates: Iterable[int] = set(_SAMPLE) | self.literals | other.literals
        return any(self.test(c) and other.test(c) for c in candidates)


_NOTHING: Final = _Chars(lambda _c: False)
_ANYTHING: Final = _Chars(lambda _c: True)


def _union(a: _Chars, b: _Chars) -> _Chars:
    return _Chars(lambda c: a.test(c) or b.test(c), a.literals | b.literals)


def _category(name: Any) -> Callable[[int], bool]:
    def digit(c: int) -> bool:
        return unicodedata.category(chr(c)) == "Nd"

    def word(c: int) -> bool:
        return chr(c).isalnum() or c == 0x5F

    def space(c: int) -> bool:
        return chr(c).isspace()

    table: dict[Any, Callable[[int], bool]] = {
        sre.CATEGORY_DIGIT: digit,
        sre.CATEGORY_NOT_DIGIT: lambda c: not digit(c),
        sre.CATEGORY_WORD: word,
        sre.CATEGORY_NOT_WORD: lambda c: not word(c),
        sre.CATEGORY_SPACE: space,
        sre.CATEGORY_NOT_SPACE: lambda c: not space(c),
    }
    return table.get(name, lambda _c: True)


def _char_set(items: list[tuple[Any, Any]]) -> _Chars:
    tests: list[Callable[[int], bool]] = []
    literals: set[int] = set()
    negate = False
    for op, arg in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            literals.add(arg)
            tests.append(lambda c, v=arg: c == v)
        elif op is sre.RANGE:
            literals.update(arg)
            tests.append(lambda c, lo=arg[0], hi=arg[1]: lo <= c <= hi)
        elif op is sre.CATEGORY:
            tests.append(_category(arg))
        else:
            tests.append(lambda _c: True)

    def member(c: int) -> bool:
        return any(t(c) for t in tests)

    return _Chars((lambda c: not member(c)) if negate else member, frozenset(literals))


def _first(items: list[tuple[Any, Any]]) -> tuple[_Chars, bool]:
    """What a sequence can start with, and whether it can match the empty string."""
    chars = _NOTHING
    for op, arg in items:
        head, nullable = _first_one(op, arg)
        chars = _union(chars, head)
        if not nullable:
            return chars, False
    return chars, True


def _first_one(op: Any, arg: Any) -> tuple[_Chars, bool]:
    if op is sre.LITERAL:
        return _Chars(lambda c: c == arg, frozenset({arg})), False
    if op is sre.NOT_LITERAL:
        return _Chars(lambda c: c != arg, frozenset({arg})), False
    if op is sre.ANY:
        return _ANYTHING, False
    if op is sre.IN:
        return _char_set(arg), False
    if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
        return _NOTHING, True
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        low, _high, body = arg
        chars, nullable = _first(list(body))
        return chars, nullable or low == 0
    if op is sre.SUBPATTERN:
        return _first(list(arg[-1]))
    if op is sre.ATOMIC_GROUP:
        return _first(list(arg))
    if op is sre.BRANCH:
        chars, nullable = _NOTHING, False
        for branch in arg[1]:
            head, empty = _first(list(branch))
            chars, nullable = _union(chars, head), nullable or empty
        return chars, nullable
    # Back-references and conditionals: assume the worst.
    return _ANYTHING, True


def _variable_repeats(items: list[tuple[Any, Any]]) -> Iterable[tuple[Any, Any]]:
    """Every backtracking repetition inside ``items`` whose length can vary (min != max)."""
    for op, arg in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, body = arg
            if low != high:
                yield low, high
            yield from _variable_repeats(list(body))
        elif op is sre.SUBPATTERN:
            yield from _variable_repeats(list(arg[-1]))
        elif op is sre.BRANCH:
            for branch in arg[1]:
                yield from _variable_repeats(list(branch))
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            yield from _variable_repeats(list(arg[1]))
        # POSSESSIVE_REPEAT and ATOMIC_GROUP never backtrack into their body.


def _branches_overlap(items: list[tuple[Any, Any]]) -> bool:
    """Whether an alternation directly inside ``items`` has two alternatives that can compete."""
    for op, arg in items:
        if op is sre.SUBPATTERN:
            if _branches_overlap(list(arg[-1])):
                return True
        elif op is sre.BRANCH:
            heads: list[_Chars] = []
            for branch in arg[1]:
                head, nullable = _first(list(branch))
                if nullable:
                    return True
                if any(head.overlaps(seen) for seen in heads):
                    return True
                heads.append(head)
    return False


def _check(items: list[tuple[Any, Any]]) -> None:
    for op, arg in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            _low, high, body = arg
            body_items = list(body)
            outer_unbounded = high is MAXREPEAT
            if high is MAXREPEAT or high > 1:
                for _inner_low, inner_high in _variable_repeats(body_items):
                    if outer_unbounded or inner_high is MAXREPEAT:
                        raise UnsafeRegex(
                            "nested quantifiers (a repeated group containing another repetition) "
                            "can backtrack catastrophically; use a possessive quantifier "
                            "(a++) or an atomic group (?>...)"
                        )
            if outer_unbounded and _branches_overlap(body_items):
                raise UnsafeRegex(
                    "repeated alternatives that can match the same text (or nothing) "
                    "can backtrack catastrophically; make the alternatives start differently"
                )
            _check(body_items)
        elif op is sre.SUBPATTERN:
            _check(list(arg[-1]))
        elif op is sre.BRANCH:
            for branch in arg[1]:
                _check(list(branch))
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _check(list(arg[1]))


def check_regex(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` after vetting it; raise :class:`UnsafeRegex` saying why it was refused."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UnsafeRegex(f"invalid regular expression: {exc}") from None
    _check(list(_parser.parse(pattern).data))
    return compiled
