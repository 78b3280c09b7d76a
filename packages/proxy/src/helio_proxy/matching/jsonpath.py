"""The JSONPath subset rules use to address tool arguments.

Accepted forms: ``$.a.b`` or ``a.b`` (the ``$.`` is optional), array indexes ``$.items[0]``,
wildcards ``$.items[*]`` (every element of an array, or every value of an object) and quoted
keys for names with dots or spaces, ``$['a.b']``. Anything else (filters, slices, recursive
descent ``..``, an empty segment) is rejected when the config loads.

Resolution returns every value the path reaches: none when it reaches nothing (the field is
"absent"), at most one for a path without wildcards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, cast

_NAME: Final = re.compile(r"[^.\[\]'\"]+")
_INDEX: Final = re.compile(r"\[(\d+)\]")
_QUOTED: Final = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")


class Wildcard:
    """A ``[*]`` / ``.*`` segment: every element of an array, every value of an object."""

    def __repr__(self) -> str:
        return "[*]"


WILDCARD: Final = Wildcard()

Segment = str | int | Wildcard


class PathError(ValueError):
    """A path outside the supported subset."""


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A parsed path: keys (``str``), indexes (``int``) and wildcards."""

    text: str
    segments: tuple[Segment, ...]

    @property
    def has_wildcard(self) -> bool:
        return any(isinstance(segment, Wildcard) for segment in self.segments)

    def resolve(self, document: Any) -> list[Any]:
        """Every value the path reaches in ``document`` (empty when it reaches nothing)."""
        current: list[Any] = [document]
        for segment in self.segments:
            following: list[Any] = []
            for node in current:
                _step(node, segment, following)
            if not following:
                return following
            current = following
        return current


def _step(node: Any, segment: Segment, out: list[Any]) -> None:
    if isinstance(segment, Wildcard):
        if isinstance(node, list):
            out.extend(cast(list[Any], node))
        elif isinstance(node, dict):
            out.extend(cast(dict[str, Any], node).values())
    elif isinstance(segment, int):
        if isinstance(node, list) and segment < len(cast(list[Any], node)):
            out.append(cast(list[Any], node)[segment])
    elif isinstance(node, dict) and segment in node:
        out.append(cast(dict[str, Any], node)[segment])


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_path(text: str) -> JsonPath:
    """Parse ``text`` or raise :class:`PathError` saying what is wrong and where."""
    if text.startswith("$"):
        rest = text[1:]
        if not rest:
            raise PathError(f"path {text!r} names the whole arguments object; name a field, e.g. '$.amount'")
    else:
        rest = "." + text
    segments: list[Segment] = []
    pos = 0
    while pos < len(rest):
        char = rest[pos]
        if char == ".":
            if rest.startswith("..", pos):
                raise PathError(f"path {text!r}: recursive descent '..' is not supported")
            if rest.startswith(".*", pos):
                segments.append(WILDCARD)
                pos += 2
                continue
            name = _NAME.match(rest, pos + 1)
            if name is None:
                raise PathError(f"path {text!r}: expected a field name after '.' at position {pos}")
            segments.append(name.group(0))
            pos = name.end()
        elif char == "[":
            if rest.startswith("[*]", pos):
                segments.append(WILDCARD)
                pos += 3
                continue
            index = _INDEX.match(rest, pos)
            if index is not None:
                segments.append(int(index.group(1)))
                pos = index.end()
                continue
            quoted = _QUOTED.match(rest, pos)
            if quoted is not None:
                raw = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
                segments.append(_unescape(raw))
                pos = quoted.end()
                continue
            raise PathError(
                f"path {text!r}: unsupported bracket at position {pos} "
                "(use [0], [*] or ['key']; filters, slices and negative indexes are not supported)"
            )
        else:
            raise PathError(f"path {text!r}: unexpected {char!r} at position {pos}")
    return JsonPath(text=text, segments=tuple(segments))
