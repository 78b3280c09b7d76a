"""The ``store`` section: where governance state lives when it is not the default SQLite file."""

from __future__ import annotations

import re

from pydantic import field_validator

from helio_proxy.config.base import ConfigModel, Secret


class StoreConfig(ConfigModel):
    """The database shared by audit, approvals, budgets, limits, evidence and tool baselines."""

    url: Secret[str | None] = None
    """Database URL, e.g. ``postgresql://helio:${PGPASSWORD}@db:5432/helio`` (shared by every replica).
    Unset: an embedded SQLite file at ``audit.path``."""

    @field_validator("url")
    @classmethod
    def _has_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
            raise ValueError(f"{value!r} is not a URL; write scheme://..., e.g. postgresql://host/db")
        return value
