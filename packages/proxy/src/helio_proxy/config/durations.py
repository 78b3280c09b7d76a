"""Durations as the config file writes them: ``30s``, ``5m``, ``1h``, ``90d``."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

DURATION_PATTERN: Final = re.compile(r"^(\d+)([smhd])$")
"""Whole number followed by one unit; no fractions, no compound forms (matches the reference)."""

_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(str):
    """A validated duration string that also knows its length in seconds."""

    __slots__ = ()

    @property
    def seconds(self) -> int:
        match = DURATION_PATTERN.match(self)
        assert match is not None  # guaranteed by parse_duration
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_duration(value: object) -> Duration:
    """Return ``value`` as a :class:`Duration`, or raise ``ValueError`` explaining the format."""
    if not isinstance(value, str) or not DURATION_PATTERN.match(value):
        raise ValueError(
            f"invalid duration {value!r}: use a whole number and one unit, e.g. 30s, 5m, 1h, 90d"
        )
    return Duration(value)


DurationField = Annotated[
    Duration,
    PlainValidator(parse_duration),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN.pattern}),
]
"""Pydantic field type for a duration; the validated value is a :class:`Duration`."""


def seconds(value: str) -> int:
    """Seconds in a duration string (validated config values are already :class:`Duration`)."""
    return parse_duration(value).seconds
