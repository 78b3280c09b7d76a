"""Store backends by URL scheme: the built-ins register here exactly as a third party would.

::

    from helio_proxy.store import register_backend

    register_backend("mysql", lambda url, durability: MyStore(url, durability=durability))

``postgresql+psycopg://`` and ``postgresql://`` both select the ``postgresql`` backend: the
part of the scheme before ``+`` is the key.
"""

from __future__ import annotations

from collections.abc import Callable

from helio_proxy.config.sections import AuditConfig
from helio_proxy.config.store import StoreConfig
from helio_proxy.store.base import Durability, Store, StoreError

StoreFactory = Callable[[str, Durability], Store]
"""Builds a (not yet opened) store from its URL and the durability mode."""

_BACKENDS: dict[str, StoreFactory] = {}


def register_backend(scheme: str, factory: StoreFactory) -> None:
    """Make ``scheme://...`` URLs open with ``factory`` (a later registration replaces an earlier one)."""
    _BACKENDS[scheme.lower()] = factory


def backends() -> list[str]:
    """The registered URL schemes."""
    return sorted(_BACKENDS)


def scheme_of(url: str) -> str:
    head, separator, _ = url.partition("://")
    if not separator:
        raise StoreError(f"{url!r} is not a store URL (scheme://...)")
    return head.split("+", 1)[0].lower()


def create_store(url: str, *, durability: Durability = "batched") -> Store:
    """A store for ``url`` from the backend registered for its scheme (not opened yet)."""
    scheme = scheme_of(url)
    factory = _BACKENDS.get(scheme)
    if factory is None:
        raise StoreError(f"no store backend for {scheme!r} URLs (known: {', '.join(backends())})")
    return factory(url, durability)


def store_url(audit: AuditConfig, store: StoreConfig) -> str:
    """``store.url`` when set, else the SQLite file at ``audit.path``."""
    return store.url or f"sqlite:///{audit.path}"
