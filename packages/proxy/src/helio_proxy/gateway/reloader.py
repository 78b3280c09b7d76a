"""Hot reload: watch ``helio.yaml`` and swap in a new policy snapshot when it changes.

A valid file replaces the snapshot in one assignment; an invalid one leaves the current snapshot
in place and says why (file, line, dotted path). Sections that only take effect at startup keep
their startup values, with a warning naming them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError
from watchfiles import Change, awatch  # pyright: ignore[reportUnknownVariableType]

from helio_proxy.config import HelioConfig, LoadedConfig, load_config
from helio_proxy.config.digest import config_digest
from helio_proxy.errors import ConfigError
from helio_proxy.gateway.enforcement import fail_closed_warnings
from helio_proxy.gateway.snapshot import Snapshot, Snapshots

DEBOUNCE_MS: Final = 200
"""Changes arriving within this window are applied as one reload (editors write in several steps)."""

RESTART_ONLY: Final = (
    "upstream",
    "upstreams",
    "listen",
    "environment",
    "session",
    "approval",
    "audit",
    "dashboard",
    "sdk",
)
"""Top-level sections that keep their startup values until the proxy restarts."""


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What one reload attempt did."""

    applied: bool
    lines: list[str]
    """What to tell the operator, in order."""
    attempted: bool = True
    """``False`` when the file's bytes had not changed (nothing to record)."""
    before_sha256: str | None = None
    after_sha256: str | None = None
    rule_count: int | None = None
    budget_count: int | None = None
    removed_rules: tuple[str, ...] = ()
    error: str | None = None


def _merge(current: HelioConfig, new: HelioConfig) -> tuple[HelioConfig, list[str]]:
    """``new``'s reloadable parts on top of ``current``'s startup-only ones; and what was kept."""
    kept = [name for name in RESTART_ONLY if getattr(new, name) != getattr(current, name)]
    if new.policies.hot_reload != current.policies.hot_reload:
        kept.append("policies.hot_reload")
    if not kept:
        return new, kept
    policies = new.policies.model_copy(update={"hot_reload": current.policies.hot_reload})
    merged: dict[str, Any] = current.model_dump(by_alias=True, exclude_unset=True)
    merged["policies"] = policies.model_dump(by_alias=True, exclude_unset=True)
    merged["policies"]["hot_reload"] = current.policies.hot_reload
    merged["budgets"] = [b.model_dump(by_alias=True, exclude_unset=True) for b in new.budgets]
    # Re-validated: the new rules must also hold together with the startup sections.
    try:
        return HelioConfig.model_validate(merged), kept
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise ValueError(
            f"the new policies depend on a change to {', '.join(kept)}, which only applies after a "
            f"restart: {problem}"
        ) from None


def reload_snapshot(snapshots: Snapshots, path: Path, *, approvals: bool = False) -> ReloadOutcome:
    """Load ``path``; swap it in if valid. Never raises for a bad file.

    ``approvals``: whether an approval gate runs (see :func:`fail_closed_warnings`)."""
    current = snapshots.current.loaded
    try:
        loaded = load_config(path, replace=current.replaced)
        if loaded.file_sha256 == current.file_sha256:
            return ReloadOutcome(False, [], attempted=False)
        config, kept = _merge(current.config, loaded.config)
        in_force = LoadedConfig(
            config=config,
            path=loaded.path,
            sha256=config_digest(config),  # of the merged config: what is in force
            warnings=[*config.warnings(), *loaded.lint],
            lint=loaded.lint,
            replaced=loaded.replaced,
            referenced_env=loaded.referenced_env,
            file_sha256=loaded.file_sha256,
        )
        snapshot = Snapshot.of(in_force)
    except (ConfigError, ValueError) as exc:
        error = str(exc) if isinstance(exc, ConfigError) else f"{path}: {exc}"
        line = f"Config reload failed (keeping current configuration): {error}"
        return ReloadOutcome(False, [line], before_sha256=current.sha256, error=error)
    snapshots.swap(snapshot)
    lines = [
        f"Warning: changing '{name}' needs a restart; keeping the value the proxy started with"
        for name in kept
    ]
    policies = config.policies
    lines.append(f"Policy reloaded: {len(policies.rules)} rules (default: {policies.default})")
    lines.extend(f"Warning: {warning}" for warning in loaded.lint)  # rules that cannot work (config.lint)
    lines.extend(
        f"Warning: {warning}" for warning in fail_closed_warnings(config, approvals=approvals, limits=True)
    )
    names = {rule.name for rule in config.policies.rules if rule.name}
    removed = tuple(
        sorted(rule.name for rule in current.config.policies.rules if rule.name and rule.name not in names)
    )
    return ReloadOutcome(
        True,
        lines,
        before_sha256=current.sha256,
        after_sha256=in_force.sha256,
        rule_count=len(policies.rules),
        budget_count=len(config.budgets),
        removed_rules=removed,
    )


class ConfigWatcher:
    """Watches the config file's directory (editors replace files) and reloads on change."""

    def __init__(
        self,
        snapshots: Snapshots,
        path: Path,
        say: Callable[[str], None],
        on_outcome: Callable[[ReloadOutcome], None] | None = None,
        *,
        approvals: bool = False,
    ) -> None:
        self.snapshots = snapshots
        self.approvals = approvals
        self.path = path.resolve()
        self.say = say
        self.on_outcome = on_outcome
        """Told about every attempted reload (the audit trail records it)."""
        self.stop_event = asyncio.Event()

    def _is_config(self, _change: Change, changed: str) -> bool:
        return Path(changed).resolve() == self.path

    def apply(self) -> ReloadOutcome:
        outcome = reload_snapshot(self.snapshots, self.path, approvals=self.approvals)
        for line in outcome.lines:
            self.say(line)
        if outcome.attempted and self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    async def run(self, on_ready: Callable[[], None]) -> None:
        """Watch until :attr:`stop_event` is set; ``on_ready`` runs once changes are being captured."""
        changes = awatch(
            self.path.parent,
            watch_filter=self._is_config,
            debounce=DEBOUNCE_MS,
            step=50,
            stop_event=self.stop_event,
            recursive=False,
        )
        pending = asyncio.ensure_future(anext(changes))
        try:
            # The watcher is created synchronously in the generator's first step.
            await asyncio.sleep(0)
            on_ready()
            while True:
                try:
                    await pending
                except StopAsyncIteration:
                    return
                self.apply()
                pending = asyncio.ensure_future(anext(changes))
        finally:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
            await changes.aclose()
