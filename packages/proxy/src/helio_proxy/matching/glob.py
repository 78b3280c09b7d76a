"""Tool-name globs: ``*``, ``**``, ``?``, ``[abc]``/``[!abc]``, ``{a,b}`` and ``\\`` escapes.

Semantics follow picomatch with ``dot: true`` (what the reference uses): ``*`` and ``?`` match
any character except ``/``, including a leading ``.``; ``**`` also crosses ``/``. Every other
character, ``.`` included, is literal. The whole name must match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

GLOB_CHARS: Final = frozenset("*?[]{}\\")


class GlobError(ValueError):
    """A malformed glob (unclosed ``[`` or ``{``, a dangling ``\\``)."""


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0

    def parse(self, *, in_braces: bool = False) -> tuple[str, str | None]:
        """Translate until the end, or (inside braces) until ``,`` or ``}``; return the stop char."""
        out: list[str] = []
        text = self.pattern
        while self.pos < len(text):
            char = text[self.pos]
            if in_braces and char in ",}":
                self.pos += 1
                return "".join(out), char
            self.pos += 1
            if char == "\\":
                if self.pos >= len(text):
                    raise GlobError("ends with an unfinished '\\' escape")
                out.append(re.escape(text[self.pos]))
                self.pos += 1
            elif char == "*":
                if self.pos < len(text) and text[self.pos] == "*":
                    self.pos += 1
                    out.append(".*")
                else:
                    out.append("[^/]*")
            elif char == "?":
                out.append("[^/]")
            elif char == "[":
                out.append(self._char_class())
            elif char == "{":
                out.append(self._braces())
            elif char in "]}":
                raise GlobError(f"unmatched {char!r} at position {self.pos - 1}")
            else:
                out.append(re.escape(char))
        if in_braces:
            raise GlobError("unclosed '{'")
        return "".join(out), None

    def _char_class(self) -> str:
        text = self.pattern
        start = self.pos
        negate = self.pos < len(text) and text[self.pos] in "!^"
        if negate:
            self.pos += 1
        members: list[str] = []
        first = True
        while self.pos < len(text):
            char = text[self.pos]
            if char == "]" and not first:
                self.pos += 1
                body = "".join(members)
                return f"[^/{body}]" if negate else f"[{body}]"
            first = False
            if char == "\\" and self.pos + 1 < len(text):
                members.append(re.escape(text[self.pos + 1]))
                self.pos += 2
                continue
            if char == "-" and members and self.pos + 1 < len(text) and text[self.pos + 1] != "]":
                members.append("-")
            else:
                members.append(re.escape(char) if char != "-" else r"\-")
            self.pos += 1
        raise GlobError(f"unclosed '[' at position {start - 1}")

    def _braces(self) -> str:
        options: list[str] = []
        while True:
            body, stop = self.parse(in_braces=True)
            options.append(body)
            if stop == "}":
                break
        if len(options) < 2:
            raise GlobError("a '{...}' group needs at least two options separated by ','")
        return "(?:" + "|".join(options) + ")"


def glob_to_regex(pattern: str) -> str:
    """The regular expression (to be used with ``fullmatch``) equivalent to ``pattern``."""
    if not pattern:
        raise GlobError("is empty")
    body, _ = _Parser(pattern).parse()
    return body


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A predicate for tool names; a plain name compiles to an equality test."""
    if not GLOB_CHARS.intersection(pattern):
        if not pattern:
            raise GlobError("is empty")
        return pattern.__eq__
    regex = re.compile(glob_to_regex(pattern), re.DOTALL)
    return lambda name: regex.fullmatch(name) is not None
