"""The governance store: audit records and the state later parts share across replicas.

Backends are chosen by URL scheme from a registry (:func:`register_backend`); the built-in
``sqlite`` and ``postgresql`` backends register on import, the way a third-party one would.
"""

from helio_proxy.store import postgres as _postgres  # registers "postgresql"
from helio_proxy.store import sqlite as _sqlite  # registers "sqlite"
from helio_proxy.store.base import Durability, Job, Store, StoreError, parse_time_text, time_text
from helio_proxy.store.registry import backends, create_store, register_backend, store_url

del _postgres, _sqlite

__all__ = [
    "Durability",
    "Job",
    "Store",
    "StoreError",
    "backends",
    "create_store",
    "parse_time_text",
    "register_backend",
    "store_url",
    "time_text",
]
