"""Reading a money amount out of a call's arguments, exactly.

An amount is a JSON number at a JSONPath (``$.amount``). It is read as a :class:`~decimal.Decimal`
from the number's own text, never through a float, so ``0.1 + 0.2`` is ``0.3`` and a 20-digit
amount keeps every digit. A path with wildcards (``$.items[*].price``) charges the sum of every
number it reaches.

Anything else is an :class:`InvalidAmount`, and the call is blocked rather than charged nothing:

==================  =====================================================================
``code``            when
==================  =====================================================================
``missing``         the path reaches nothing
``not_a_number``    a string (even ``"100"``), a boolean, ``null``, an object or an array
``not_finite``      ``NaN``, ``Infinity`` or ``-Infinity`` (Python's JSON parser accepts them),
                    or a number too large for a double (``1e400``)
``negative``        below zero (a refund is not a negative charge)
==================  =====================================================================
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, cast

from helio_proxy.matching.jsonpath import JsonPath

InvalidCode = Literal["missing", "not_a_number", "not_finite", "negative"]


@dataclass(frozen=True, slots=True)
class InvalidAmount:
    """Why no amount could be charged (see the module table)."""

    code: InvalidCode
    detail: str
    """A sentence for the block message, naming the path."""


class _NonFinite:
    """What ``NaN`` / ``Infinity`` parse to in the exact re-read."""


_NON_FINITE: Final = _NonFinite()


class ExactArguments:
    """A call's arguments re-read from its raw bytes with every number as a ``Decimal`` (lazily, once)."""

    def __init__(self, arguments: Mapping[str, Any] | None, raw: bytes) -> None:
        self.arguments = arguments
        self._raw = raw
        self._exact: Mapping[str, Any] | None = None
        self._parsed = False

    def exact(self) -> Mapping[str, Any] | None:
        """The arguments with numbers as ``Decimal`` (``None`` when the raw request is unusable)."""
        if not self._parsed:
            self._parsed = True
            self._exact = _exact_arguments(self._raw)
        return self._exact


def _exact_arguments(raw: bytes) -> Mapping[str, Any] | None:
    if not raw:
        return None
    try:
        message = json.loads(raw, parse_float=Decimal, parse_constant=lambda _name: _NON_FINITE)
    except (ValueError, UnicodeDecodeError):
        return None
    params = cast(dict[str, Any], message).get("params") if isinstance(message, dict) else None
    arguments = cast(dict[str, Any], params).get("arguments") if isinstance(params, dict) else None
    return cast(dict[str, Any], arguments) if isinstance(arguments, dict) else None


def read_amount(path: JsonPath, arguments: ExactArguments) -> Decimal | InvalidAmount:
    """The amount ``path`` names in the call's arguments, or why it cannot be charged."""
    values = path.resolve(arguments.arguments) if arguments.arguments is not None else []
    if not values:
        return InvalidAmount("missing", f"{path.text} is missing from the arguments")
    for value in values:
        # Also a number too large for a double (1e400): the upstream most likely reads infinity.
        if isinstance(value, float) and not math.isfinite(value):
            return InvalidAmount("not_finite", f"{path.text} is not a finite number")
    if any(isinstance(value, float) for value in values):
        exact = arguments.exact()
        reread = path.resolve(exact) if exact is not None else []
        if len(reread) == len(values):
            values = reread
    total = Decimal(0)
    for value in values:
        amount = _number(value, path.text)
        if isinstance(amount, InvalidAmount):
            return amount
        total += amount
    return total


def _number(value: Any, where: str) -> Decimal | InvalidAmount:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | _NonFinite):
        kind = "a boolean" if isinstance(value, bool) else _json_kind(value)
        return InvalidAmount("not_a_number", f"{where} is {kind}, not a JSON number")
    if isinstance(value, _NonFinite):
        return InvalidAmount("not_finite", f"{where} is not a finite number")
    if isinstance(value, float):
        if not math.isfinite(value):
            return InvalidAmount("not_finite", f"{where} is not a finite number")
        # repr() is the shortest text that reads back as the same float: the number as sent.
        amount = Decimal(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            return InvalidAmount("not_finite", f"{where} is not a finite number")
        amount = value
    else:
        amount = Decimal(value)
    if amount < 0:
        return InvalidAmount("negative", f"{where} is negative ({format(amount, 'f')})")
    return amount


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def decimal_text(value: Decimal) -> str:
    """An amount as a plain decimal string (``5000``, ``12.50``; never ``5E+3``)."""
    return format(value, "f")
