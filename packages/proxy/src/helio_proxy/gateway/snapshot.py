"""The current configuration snapshot: the loaded config and its compiled policy, swapped whole.

Components hold the :class:`Snapshots` holder and read ``.current`` when they need it; none keeps
a copy, so a hot reload takes effect on the next call and an in-flight call finishes under the
snapshot it started with.
"""

from __future__ import annotations

from dataclasses import dataclass

from helio_proxy.config import HelioConfig, LoadedConfig
from helio_proxy.policy import CompiledPolicy, compile_policy


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One validated config and the policy compiled from it."""

    loaded: LoadedConfig
    policy: CompiledPolicy
    budgets_hold: bool = False
    """Whether a budget can hold a call for approval (``on_exceed: require_approval``): only then
    can a call the policy did not send to approval still wait for operators."""

    @classmethod
    def of(cls, loaded: LoadedConfig) -> Snapshot:
        holds = any(budget.on_exceed == "require_approval" for budget in loaded.config.budgets)
        return cls(loaded, compile_policy(loaded.config), holds)

    @property
    def sha256(self) -> str:
        """The hash of this snapshot's config (what its calls' records carry)."""
        return self.loaded.sha256

    @property
    def config(self) -> HelioConfig:
        return self.loaded.config


class Snapshots:
    """Holds the current :class:`Snapshot`; replacing it is one atomic assignment."""

    def __init__(self, first: Snapshot) -> None:
        self.current = first

    def swap(self, snapshot: Snapshot) -> Snapshot:
        """Install ``snapshot``; return the one it replaced."""
        previous, self.current = self.current, snapshot
        return previous
