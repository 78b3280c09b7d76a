"""The ``store`` section: where governance state lives when it is not the default SQLite file."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from helio_proxy.config.base import ConfigModel, Secret


class StoreConfig(ConfigModel):
    """The database shared by audit, approvals, budgets, limits, evidence and tool baselines."""

    url: Secret[str | None] = None
    """Database URL, e.g. ``postgresql://helio:${PGPASSWORD}@db:5432/helio`` (shared by every replica).
    Unset: an embedded SQLite file at ``audit.path``."""

    session_state: Literal["auto", "memory", "store"] = "auto"
    """Where per-session governance state lives (SDK and ``produces`` evidence, completed calls,
    declared dependencies, context). ``memory``: in the proxy process (lost on restart, not shared
    by replicas). ``store``: one row per session in this store, so a restart or another replica on
    the same database keeps it and ``helio policy test --session`` reads it. ``auto``: ``store``
    when ``url`` is PostgreSQL or ``helio start --workers`` is above 1, else ``memory``."""

    def session_state_in_store(self, *, multi_process: bool = False) -> bool:
        """Whether session state is store-backed (``auto`` resolved against ``url`` and whether
        this is one of several worker processes)."""
        if self.session_state != "auto":
            return self.session_state == "store"
        if multi_process:
            return True
        url = self.url or ""
        return url.split(":", 1)[0].split("+", 1)[0].lower() in {"postgresql", "postgres"}

    @field_validator("url")
    @classmethod
    def _has_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
            raise ValueError(f"{value!r} is not a URL; write scheme://..., e.g. postgresql://host/db")
        return value
