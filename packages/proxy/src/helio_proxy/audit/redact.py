"""Scrubbing secrets out of what the audit trail stores.

Three rules, applied to tool inputs, upstream responses and errors, evidence and metadata:

* a mapping key that matches a pattern has its value replaced with ``[REDACTED]``, whatever it is;
* inside strings, ``key=value`` / ``key: value`` pairs whose key matches lose their value
  (``Authorization: Bearer abc`` → ``Authorization: Bearer [REDACTED]``);
* card numbers (14-19 digits, optionally grouped by spaces or dashes, an issuer digit 2-6 first,
  passing the Luhn check) are masked down to their last four digits, in strings and in integers.

Patterns are case-insensitive regular expressions searched anywhere in the key, so ``token``
also covers ``access_token`` (and ``max_tokens``: redaction errs on the side of hiding).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

DEFAULT_PATTERNS: Final = (
    "password",
    "secret",
    "token",
    r"api[-_ ]?key",
    "authorization",
    "cookie",
)
"""Key patterns that always apply; ``audit.redact`` adds to them."""

REDACTED: Final = "[REDACTED]"

_CARD: Final = re.compile(r"(?<![\d.])[2-6]\d(?:[ -]?\d){12,17}(?![\d.])")
"""Candidate card numbers: 14-19 digits, single spaces or dashes allowed between them."""

_KEY_CACHE_SIZE: Final = 4096
"""Distinct keys whose redaction decision is remembered (tool schemas repeat the same few)."""

_SHORTEST_SECRET: Final = 4
"""Strings shorter than this can hold neither a ``key=value`` pair nor a card number."""

MAX_DEPTH: Final = 64
"""Deeper structures are replaced wholesale rather than walked (bounds the work per record)."""

_CARD_HINT: Final = r"\d(?:[ -]?\d){13,}"
"""Every run of digits :data:`_CARD` could match, and every integer :meth:`Redactor._scrub_int` masks."""

_HINTS_PAY: Final = 12
"""From this length on, checking the hints first is cheaper than running both substitutions."""

_FOURTEEN_DIGITS: Final = b"0" * 14
_DIGITS_TO_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")

_PLAIN_PATTERN: Final = re.compile(
    r"""(?:
        [^\\.^$"\[\](){}|?*+\x00-\x1f]          # a literal that JSON text never escapes
      | \\[dw]                                   # a digit or a word character
      | \\[-.\[\](){}|?*+]                        # an escaped metacharacter: a literal
      | \[ -? (?: [a-z]-[a-z] | [A-Z]-[A-Z] | [0-9]-[0-9] | \\[dw] | \\[-.\]] | [^\\\]\-^"\x00-\x1f] )+ -? \]
      | \( (?: \?: | (?!\?) ) | \) | \|            # groups (no lookaround, flag or name), alternatives
      | [?*+] \?? | \{ \d* (?:,\d*)? \} \??       # quantifiers
    )*""",
    re.VERBOSE,
)
"""Key patterns whose matches are found in JSON text as they are in the strings it encodes.

Such a pattern only matches characters JSON leaves as they are (no quote, backslash or control
character: no ``.``, no negated class, no range across them) and asserts nothing about what
surrounds a match (no anchor, boundary or lookaround), so a string it matches in a key or a value
has that match verbatim in the value's JSON text.
"""


_QUANTIFIER: Final = re.compile(r"[?*+]|\{[\d,]*\}")


def _required_literal(pattern: str) -> str:
    """The longest run of plain characters every match of ``pattern`` holds, lowercased; ``""``
    when there is none to rely on (alternatives, groups, or no literal left unquantified).

    For an ASCII :data:`_PLAIN_PATTERN` matched case-insensitively against ASCII text.
    """
    if any(char in pattern for char in "|()"):
        return ""
    runs: list[str] = []
    run = ""
    position = 0
    while position < len(pattern):
        char = pattern[position]
        quantifier = _QUANTIFIER.match(pattern, position)
        if quantifier is not None:  # the atom before it may repeat or be absent
            runs.append(run[:-1])
            run = ""
            position = quantifier.end()
        elif char == "[":  # a class: not a literal
            runs.append(run)
            run = ""
            position += 1
            while pattern[position] != "]":
                position += 2 if pattern[position] == "\\" else 1
            position += 1
        elif char == "\\":
            if pattern[position + 1] in "dw":
                runs.append(run)
                run = ""
            else:
                run += pattern[position + 1]
            position += 2
        else:
            run += char.lower()
            position += 1
    runs.append(run)
    return max(runs, key=len)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    if not 14 <= len(digits) <= 19 or not luhn_valid(digits):
        return text
    return f"[CARD ...{digits[-4:]}]"


def _redact_pair(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED


class Redactor:
    """Applies the redaction rules to JSON-like values, returning scrubbed copies."""

    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        self.patterns: tuple[str, ...] = (*DEFAULT_PATTERNS, *extra_patterns)
        alternatives = "|".join(f"(?:{p})" for p in self.patterns)
        self._key = re.compile(alternatives, re.IGNORECASE)
        # key, a separator (quote, colon or equals), an optional auth scheme, then the value.
        self._pair = re.compile(
            rf"((?:{alternatives})[\w-]*[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)([^\s\"'&,;]+)",
            re.IGNORECASE,
        )
        self._keys_seen: dict[str, bool] = {}
        plain = all(_PLAIN_PATTERN.fullmatch(pattern) for pattern in self.patterns)
        # What may_redact searches: any text case-insensitively with the patterns themselves;
        # ASCII text, faster, lowercased, for a literal each pattern's matches contain (else for
        # the lowercased pattern), and for the card hint's digits with separators taken out.
        self._hint: re.Pattern[str] | None = (
            re.compile(f"{alternatives}|{_CARD_HINT}", re.IGNORECASE) if plain else None
        )
        self._ascii_ready = plain and all(pattern.isascii() for pattern in self.patterns)
        literals = [_required_literal(pattern) if self._ascii_ready else "" for pattern in self.patterns]
        self._ascii_literals = tuple(literal for literal in literals if literal)
        rest = [
            p.lower()
            for p, literal in zip(self.patterns, literals, strict=True)
            if self._ascii_ready and not literal
        ]
        self._ascii_rest = re.compile("|".join(f"(?:{p})" for p in rest)) if rest else None

    def _ascii_key_hint(self, lowered: str) -> bool:
        """Whether a key pattern could match ASCII text (given lowercased): ASCII patterns match it
        case-insensitively as their lowercased forms match it lowercased."""
        for literal in self._ascii_literals:
            if literal in lowered:
                return True
        return self._ascii_rest is not None and self._ascii_rest.search(lowered) is not None

    @staticmethod
    def _ascii_card_hint(text: str) -> bool:
        """Whether ASCII ``text`` has a card-like run: 14 digits once single spaces and dashes are
        taken out."""
        return _FOURTEEN_DIGITS in text.encode("ascii").translate(_DIGITS_TO_ZERO, b" -")

    def _ascii_hints(self, text: str) -> bool:
        return self._ascii_key_hint(text.lower()) or self._ascii_card_hint(text)

    def may_redact(self, json_text: str) -> bool:
        """Whether scrubbing a value could change it, judged from the value's JSON text.

        ``False`` only when no key pattern matches anywhere in the text and it holds no run of 14
        digits or more (single spaces or dashes between them): then no key is redacted, no string
        holds a ``key=value`` pair (whose key part is a pattern match) or a card number, and no
        integer is a card number, so (within :data:`MAX_DEPTH`) :meth:`scrub` returns an equal
        value. ``json_text`` must be JSON text of the value that escapes only quotes, backslashes
        and control characters (the standard library's with non-ASCII kept, or orjson's, which
        escapes every character the same way) and writes every string the walk sees; with a
        pattern that could match one of those characters, or that looks at what surrounds a
        match, this is always ``True``.
        """
        if self._hint is None:
            return True
        if self._ascii_ready and json_text.isascii():
            return self._ascii_hints(json_text)
        return self._hint.search(json_text) is not None

    def key_matches(self, key: str) -> bool:
        """Whether values under ``key`` are redacted (keys repeat, so answers are cached)."""
        known = self._keys_seen.get(key)
        if known is None:
            known = self._key.search(key) is not None
            if len(self._keys_seen) < _KEY_CACHE_SIZE:
                self._keys_seen[key] = known
        return known

    def scrub(self, value: Any) -> Any:
        """A copy of ``value`` with every rule applied (the input is never modified)."""
        return self._scrub(value, 0)

    def _scrub(self, value: Any, depth: int) -> Any:
        cls = value.__class__
        if cls is str:
            return self.scrub_text(value)
        if cls is dict and depth < MAX_DEPTH:  # the common cases first
            return self._scrub_dict(value, depth)
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if depth >= MAX_DEPTH:
            return REDACTED
        if isinstance(value, dict):
            return self._scrub_dict(value, depth)  # pyright: ignore[reportUnknownArgumentType]
        if isinstance(value, list | tuple):
            return [self._scrub(item, depth + 1) for item in value]  # pyright: ignore[reportUnknownVariableType]
        if isinstance(value, int):
            return self._scrub_int(value)
        return self.scrub_text(str(value))

    def _scrub_dict(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        key_matches = self.key_matches
        for key, item in value.items():
            name = key if key.__class__ is str else str(key)
            out[name] = REDACTED if key_matches(name) else self._scrub(item, depth + 1)
        return out

    def scrub_text(self, text: str) -> str:
        if len(text) < _SHORTEST_SECRET:
            return text
        if (
            len(text) >= _HINTS_PAY
            and self._ascii_ready
            and text.__class__ is str
            and text.isascii()
            and not self._ascii_card_hint(text)
        ):
            # No card-like run, so no card to mask; every pair starts with a key pattern's match.
            return self._pair.sub(_redact_pair, text) if self._ascii_key_hint(text.lower()) else text
        text = _CARD.sub(_mask_card, text)
        return self._pair.sub(_redact_pair, text)

    @staticmethod
    def _scrub_int(value: int) -> int | str:
        digits = str(abs(value))
        if 14 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits):
            return f"[CARD ...{digits[-4:]}]"
        return value
