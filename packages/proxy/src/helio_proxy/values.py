"""``@value``: the per-call value classes, frozen to the type checker, plain slotted ones at run time.

A frozen dataclass sets each field in ``__init__`` through ``object.__setattr__``: a 7-field one
took 2.6 µs to make on the benchmark VM against 0.5 µs for the same class unfrozen, and a governed
``tools/call`` makes several (the inbound message, its facts, its outcome, the reply). Classes
decorated here are ``@dataclass(slots=True, unsafe_hash=True)`` when the program runs, so they
hash and compare as frozen ones do, and pyright reads them as ``frozen=True`` (``frozen_default``
of :func:`typing.dataclass_transform`): an assignment to a field is a type error, which
``nox -s typecheck`` reports, not a runtime one. Only leaf classes take it (a dataclass may not mix
frozen and unfrozen bases).
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def value(cls: type[_T]) -> type[_T]:
    """Make ``cls`` a value class (see the module's docstring)."""
    return dataclasses.dataclass(slots=True, unsafe_hash=True)(cls)
