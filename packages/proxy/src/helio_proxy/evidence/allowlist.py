"""What the config says about evidence keys: which the SDK may mark, and which tool produces each.

The sideband accepts only keys that some rule requires (``evidence.requires`` of an enforced or
shadow rule), so an agent cannot fill the proxy's memory with keys no rule reads. Both views are
derived from a config snapshot and recomputed when hot reload swaps it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from helio_proxy.config.root import HelioConfig


def evidence_allowlist(config: HelioConfig) -> frozenset[str]:
    """Every evidence key some rule requires."""
    return frozenset(
        key
        for _, _, rule in config.all_rules()
        if rule.evidence is not None
        for key in (item.key for item in rule.evidence.items())
    )


def evidence_producers(config: HelioConfig) -> dict[str, str]:
    """Evidence key → the tool (name or glob) whose successful call produces it (``evidence.produces``).

    The first enforced rule that produces a key wins; used to tell a blocked agent what to call.
    """
    producers: dict[str, str] = {}
    for rule in config.policies.rules:
        if rule.evidence is not None and rule.evidence.produces and rule.match.tool:
            producers.setdefault(rule.evidence.produces, rule.match.tool)
    return producers


@dataclass(frozen=True, slots=True)
class EvidenceIndex:
    """The evidence views of one config snapshot."""

    allowed_keys: frozenset[str]
    producers: Mapping[str, str]

    @classmethod
    def of(cls, config: HelioConfig) -> EvidenceIndex:
        return cls(evidence_allowlist(config), evidence_producers(config))


class CurrentEvidenceIndex:
    """The :class:`EvidenceIndex` of whatever config ``current`` returns now (cached per snapshot)."""

    def __init__(self, current: Callable[[], HelioConfig]) -> None:
        self._current = current
        self._config: HelioConfig | None = None
        self._index = EvidenceIndex(frozenset(), {})

    def get(self) -> EvidenceIndex:
        config = self._current()
        if config is not self._config:
            self._index = EvidenceIndex.of(config)
            self._config = config
        return self._index
