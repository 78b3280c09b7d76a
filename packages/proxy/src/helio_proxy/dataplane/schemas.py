"""Tool schemas, compiled once: arguments against ``inputSchema``, results against ``outputSchema``.

Validators come from ``jsonschema-rs`` (measured on this machine for a typical five-property
schema: 0.4 µs for a valid instance, 3.3 µs to list every error of an invalid one; fastjsonschema
1.8 µs and only the first error; ``jsonschema`` 48 µs). They are cached by the baseline's
fingerprint, so a tool is compiled once per definition and an accepted drift (a new baseline)
compiles the new schema.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import jsonschema_rs

log = logging.getLogger("helio_proxy.dataplane.schemas")

MAX_ERRORS: Final = 20
"""Most errors reported to the agent for one call (the count says how many there were)."""

MAX_CACHED: Final = 4096
"""Compiled validators kept (oldest dropped first past this)."""

Which = Literal["inputSchema", "outputSchema"]


@dataclass(frozen=True, slots=True)
class SchemaError:
    """One violation: where (a JSON path into the instance) and what the schema expected."""

    path: str
    expected: str
    keyword: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "expected": self.expected, "keyword": self.keyword}


def json_path(parts: list[str | int]) -> str:
    """``["items", 0, "sku"]`` → ``$.items[0].sku``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += "[" + repr(part).replace("'", '"') + "]"
    return out


class _Unusable:
    """A schema that does not compile: the tool's own problem, so nothing is enforced against it."""


_UNUSABLE: Final = _Unusable()


class ValidatorCache:
    """Compiled validators by (baseline fingerprint, which schema)."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[str, Which], Any] = {}
        self.compilations = 0

    def validator(self, fingerprint: str, definition: Mapping[str, Any], which: Which) -> Any | None:
        """The validator of the definition's ``which`` schema (``None`` if it has none or it is unusable)."""
        key = (fingerprint, which)
        found = self._compiled.get(key)
        if found is None:
            found = self._compile(definition.get(which))
            if len(self._compiled) >= MAX_CACHED:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = found
        return None if found is _UNUSABLE else found

    def _compile(self, schema: Any) -> Any:
        if not isinstance(schema, Mapping) or not schema:
            return _UNUSABLE
        self.compilations += 1
        try:
            return jsonschema_rs.validator_for(dict(schema))  # pyright: ignore[reportUnknownArgumentType]
        except (ValueError, jsonschema_rs.ValidationError) as exc:
            log.warning("a tool schema does not compile; it is not enforced: %s", exc)
            return _UNUSABLE

    def errors(
        self, fingerprint: str, definition: Mapping[str, Any], which: Which, instance: Any
    ) -> list[SchemaError]:
        """Every violation of ``instance`` (empty when valid or when there is no usable schema)."""
        validator = self.validator(fingerprint, definition, which)
        if validator is None or validator.is_valid(instance):
            return []
        found: list[SchemaError] = []
        for error in validator.iter_errors(instance):
            schema_path = list(error.schema_path)
            keyword = str(schema_path[-1]) if schema_path else ""
            found.append(SchemaError(json_path(list(error.instance_path)), _expected(error.message), keyword))
            if len(found) >= MAX_ERRORS:
                break
        return found


def _expected(message: str) -> str:
    """The validator's message, which states the expectation (``"5000" is not of type "number"``)."""
    return message if len(message) <= 300 else message[:297] + "..."
