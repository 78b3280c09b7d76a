"""Tool-definition fingerprints and what changed between two definitions.

A fingerprint is the SHA-256 of the whole definition as canonical JSON (sorted keys, no
insignificant whitespace), so key order and formatting never count as a change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

ASPECTS: Final = ("annotations", "inputSchema", "outputSchema", "description", "title")
"""Named parts of a definition; a change anywhere else is reported as ``other``."""

DUPLICATE: Final = "duplicate"
"""Aspect reported when one ``tools/list`` names a tool more than once."""


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(definition: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the definition's canonical JSON."""
    return hashlib.sha256(canonical_json(definition)).hexdigest()


def drifted_aspects(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[str, ...]:
    """The aspects in which ``current`` differs from ``baseline``, in :data:`ASPECTS` order."""
    changed = [
        aspect
        for aspect in ASPECTS
        if canonical_json(baseline.get(aspect)) != canonical_json(current.get(aspect))
    ]
    rest = (baseline.keys() | current.keys()) - set(ASPECTS)
    if any(canonical_json(baseline.get(key)) != canonical_json(current.get(key)) for key in rest):
        changed.append("other")
    return tuple(changed)
