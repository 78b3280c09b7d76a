"""The config hash: a digest of the configuration in force, and the secrets it names.

The hash is taken over the validated config after ``${VAR}`` substitution, so a changed
environment value changes it even when the file's text did not (an approval bound to one config
hash does not release a call under another). It is SHA-256 over canonical JSON (sorted keys, no
whitespace) of every field, defaults included; the value of each field marked
:data:`~helio_proxy.config.base.SECRET` stands in it as ``sha256:<hex>`` of the value, so
neither the hash's input nor anything derived from it carries a secret in clear.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, cast

from pydantic import BaseModel

from helio_proxy.config.base import SECRET


def _digested(value: Any) -> Any:
    """Every string in ``value`` as ``sha256:<hex>`` of it."""
    if isinstance(value, str):
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    if isinstance(value, dict):
        return {key: _digested(item) for key, item in cast(dict[str, Any], value).items()}
    if isinstance(value, list):
        return [_digested(item) for item in cast(list[Any], value)]
    return value


def _is_secret(model: BaseModel, name: str) -> bool:
    return any(item is SECRET for item in type(model).model_fields[name].metadata)


def _canonical(value: Any) -> Any:
    if isinstance(value, BaseModel):
        out: dict[str, Any] = {}
        for name, info in type(value).model_fields.items():
            dumped = _canonical(getattr(value, name))
            out[info.alias or name] = _digested(dumped) if _is_secret(value, name) else dumped
        return out
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in cast(dict[Any, Any], value).items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in cast(list[Any], value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # Decimal, Duration, enums: their text form


def canonical_config(config: BaseModel) -> dict[str, Any]:
    """The config as plain JSON data, every field present, secrets as ``sha256:<hex>``."""
    return cast(dict[str, Any], _canonical(config))


def config_digest(config: BaseModel) -> str:
    """SHA-256 (hex) of :func:`canonical_config` as sorted, compact JSON."""
    text = json.dumps(canonical_config(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in cast(dict[Any, Any], value).values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in cast(list[Any], value):
            yield from _strings(item)


def secret_values(config: BaseModel) -> set[str]:
    """Every non-empty string held by a field marked secret, anywhere in ``config``."""
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                item = getattr(value, name)
                if _is_secret(value, name):
                    found.update(text for text in _strings(item) if text)
                else:
                    visit(item)
        elif isinstance(value, dict):
            for item in cast(dict[Any, Any], value).values():
                visit(item)
        elif isinstance(value, list | tuple):
            for item in cast(list[Any], value):
                visit(item)

    visit(config)
    return found
