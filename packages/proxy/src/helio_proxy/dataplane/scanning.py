"""Content scanning: secrets and personal data in a call's arguments and a tool's results.

Detectors are precompiled regular expressions, one alternation per rule, run over every string
in the JSON (keys are not scanned). Card numbers must also pass the Luhn checksum, so order ids
and timestamps of the right length are not taken for cards. We looked for a well-kept detector
library first: ``detect-secrets`` (the usual choice) has had no release since 2024-05 and scans
files line by line through plugin objects, about a hundred times slower per string than one
compiled alternation, so the patterns here follow the provider formats it and the providers
document.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from helio_proxy.config.data_plane import Mode, ScanAction, ScanRule, ScanScope

Category = Literal["secret", "pii", "custom"]

DETECTORS: Final[dict[str, tuple[str, Category]]] = {
    "aws_access_key": (r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", "secret"),
    "aws_secret_key": (
        r"(?i:aws.{0,20}?(?:secret|private).{0,20}?['\"=:\s]\s*)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])",
        "secret",
    ),
    "github_token": (r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b", "secret"),
    "slack_token": (r"\bxox[abposr]-[A-Za-z0-9-]{10,250}\b", "secret"),
    "stripe_key": (r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}\b", "secret"),
    "google_api_key": (r"\bAIza[0-9A-Za-z_-]{35}\b", "secret"),
    "openai_api_key": (r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}\b", "secret"),
    "jwt": (r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", "secret"),
    "private_key": (
        r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END (?:[A-Z]+ )?PRIVATE KEY(?: BLOCK)?-----",
        "secret",
    ),
    "card_number": (
        r"(?<![\d-])(?:\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{1,7}|\d{4}[ -]?\d{6}[ -]?\d{4,5})(?![\d-])",
        "pii",
    ),
    "email": (r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}\b", "pii"),
    "phone": (
        r"(?<![\w+])\+[1-9]\d{0,2}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,3}(?!\w)",
        "pii",
    ),
}
"""Built-in detectors: pattern and category. ``phone`` only takes international (``+``) numbers."""

ACTION_ORDER: Final = {"flag": 0, "redact": 1, "block": 2}


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class Finding:
    """One match: which rule, what kind, where (a JSON path), and what was done."""

    rule: str
    kind: str
    category: Category
    scope: ScanScope
    path: str
    action: ScanAction

    def as_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "category": self.category,
            "scope": self.scope,
            "path": self.path,
            "action": self.action,
        }


HINTS: Final[dict[str, tuple[str, ...]]] = {
    "aws_access_key": ("AKIA", "ASIA", "ABIA", "ACCA"),
    "aws_secret_key": ("aws", "AWS", "Aws"),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "slack_token": ("xox",),
    "stripe_key": ("_live_", "_test_"),
    "google_api_key": ("AIza",),
    "openai_api_key": ("T3BlbkFJ",),
    "jwt": ("eyJ",),
    "private_key": ("PRIVATE KEY",),
    "email": ("@",),
    "phone": ("+",),
}
"""Substrings a match must contain: a string without any of them is not searched at all, which
keeps the scan of ordinary text to a few ``in`` tests per detector."""

_DIGITS: Final = re.compile(r"\d{4}[ -]?\d{4}")
"""What every card number format the detector takes contains (a cheap first test)."""


@dataclass(frozen=True, slots=True)
class Detector:
    kind: str
    category: Category
    regex: re.Pattern[str]
    hints: tuple[str, ...]

    def candidates(self, text: str) -> bool:
        if self.kind == "card_number":
            return _DIGITS.search(text) is not None
        return not self.hints or any(hint in text for hint in self.hints)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    detectors: tuple[Detector, ...]
    scope: frozenset[str]
    action: ScanAction
    tools: re.Pattern[str]
    upstreams: frozenset[str] | None

    def applies(self, tool: str, upstream: str | None, scope: ScanScope) -> bool:
        return (
            scope in self.scope
            and (self.upstreams is None or (upstream or "") in self.upstreams)
            and self.tools.match(tool) is not None
        )


def compile_globs(globs: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of the ``fnmatch`` globs."""
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs) or "(?!)")


def compile_rule(rule: ScanRule, mode: Mode) -> CompiledRule | None:
    """A rule ready to run (``None`` when its mode is ``off``); ``warn`` downgrades the action to ``flag``."""
    if mode == "off":
        return None
    detectors: list[Detector] = []
    for name in rule.detect:
        pattern, category = DETECTORS[name]
        detectors.append(Detector(name, category, re.compile(pattern), HINTS.get(name, ())))
    for kind, pattern in rule.patterns.items():
        detectors.append(Detector(kind, "custom", re.compile(pattern), ()))
    action: ScanAction = "flag" if mode == "warn" else rule.action
    return CompiledRule(
        rule.name,
        tuple(detectors),
        frozenset(rule.scope),
        action,
        compile_globs(rule.tools),
        frozenset(rule.upstreams) if rule.upstreams is not None else None,
    )


@dataclass
class ScanOutcome:
    """What scanning found, and the value with ``redact`` matches replaced."""

    value: Any
    findings: list[Finding] = field(default_factory=list[Finding])
    changed: bool = False

    @property
    def action(self) -> ScanAction | None:
        """The strongest action among the findings (``None`` when nothing was found)."""
        if not self.findings:
            return None
        return max((finding.action for finding in self.findings), key=ACTION_ORDER.__getitem__)


def scan(value: Any, rules: Sequence[CompiledRule], scope: ScanScope, path: str = "$") -> ScanOutcome:
    """Scan every string in ``value`` with ``rules``; ``redact`` matches are replaced by ``[REDACTED:kind]``."""
    outcome = ScanOutcome(value)
    if not rules:
        return outcome
    # One serialisation and a few substring tests decide whether anything can match at all;
    # most results match nothing and are never walked.
    flat = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    live: list[CompiledRule] = []
    for rule in rules:
        detectors = tuple(detector for detector in rule.detectors if detector.candidates(flat))
        if detectors:
            live.append(dataclasses.replace(rule, detectors=detectors))
    if live:
        outcome.value = _walk(value, live, scope, path, outcome)
    return outcome


def _walk(
    value: Any, rules: Sequence[CompiledRule], scope: ScanScope, path: str, outcome: ScanOutcome
) -> Any:
    if isinstance(value, str):
        return _scan_text(value, rules, scope, path, outcome)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            key_text = str(key)  # pyright: ignore[reportUnknownArgumentType]
            step = f"{path}.{key_text}" if key_text.isidentifier() else f'{path}["{key_text}"]'
            out[key_text] = _walk(item, rules, scope, step, outcome)
        return out
    if isinstance(value, list):
        return [_walk(item, rules, scope, f"{path}[{i}]", outcome) for i, item in enumerate(value)]  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
    return value


def _scan_text(
    text: str, rules: Sequence[CompiledRule], scope: ScanScope, path: str, outcome: ScanOutcome
) -> str:
    for rule in rules:
        for detector in rule.detectors:
            if not detector.candidates(text):
                continue
            pieces: list[str] = []
            last = 0
            for match in detector.regex.finditer(text):
                if detector.kind == "card_number" and not luhn_ok(re.sub(r"\D", "", match.group())):
                    continue
                outcome.findings.append(
                    Finding(rule.name, detector.kind, detector.category, scope, path, rule.action)
                )
                if rule.action == "redact":
                    pieces.append(text[last : match.start()])
                    pieces.append(f"[REDACTED:{detector.kind}]")
                    last = match.end()
            if pieces:
                pieces.append(text[last:])
                text = "".join(pieces)
                outcome.changed = True
    return text
