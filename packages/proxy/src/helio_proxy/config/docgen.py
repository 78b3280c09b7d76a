"""Generate ``docs/configuration.md`` from the config models' field docstrings.

``python -m helio_proxy.config.docgen --write docs/configuration.md`` rewrites it;
``--check`` exits 1 when the file differs from what the schema says.
"""

from __future__ import annotations

import sys
import types
import typing
from enum import Enum
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from helio_proxy import docgen
from helio_proxy.config.root import HelioConfig

HEADER = """\
# Configuration reference (`helio.yaml`)

Generated from the schema by `python -m helio_proxy.config.docgen --write docs/configuration.md`;
a test fails when this file and the code disagree. Every section is strict: an unknown key is an
error naming its dotted path and line. Any string may use `${VAR}` (an unset variable is an
error) or `${VAR:-default}` (`default` when `VAR` is unset or empty, as in the shell). Durations are a whole number and one unit: `30s`, `5m`, `1h`, `90d`. Top-level keys
starting with `x-` are ignored, so they can hold YAML anchors.
"""


def _plain_name(annotation: object) -> str:
    return str(getattr(annotation, "__name__", annotation))


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        inner = args[0]
        if getattr(inner, "__name__", "") == "Duration":
            return "duration"
        if any(isinstance(a, FieldInfo) and a.discriminator for a in args[1:]):
            return " \\| ".join(_type_name(arm) for arm in typing.get_args(inner))
        return _type_name(inner)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(names) + (" (optional)" if type(None) in args else "")
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[0])} → {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        members: list[Enum] = list(annotation)
        return " \\| ".join(f"`{m.value}`" for m in members)
    name = _plain_name(annotation)  # pyright: ignore[reportUnknownArgumentType]
    return {
        "str": "string",
        "int": "integer",
        "bool": "boolean",
        "Decimal": "number",
        "Duration": "duration",
    }.get(name, name)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        try:
            value = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return ""
        if isinstance(value, BaseModel):
            return "(section defaults)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            items = typing.cast(list[BaseModel], value)
            return "`" + str([m.model_dump(exclude_none=True) for m in items]) + "`"
        return f"`{value}`"
    if info.default is PydanticUndefined or info.default is None:
        return ""
    return f"`{info.default}`"


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                return
            seen.append(annotation)
            for info in annotation.model_fields.values():
                visit(info.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return seen


def render() -> str:
    parts = [HEADER]
    for model in _models(HelioConfig):
        parts.append(f"\n## {model.__name__}\n")
        doc = (model.__doc__ or "").strip()
        if doc:
            parts.append(" ".join(doc.split()).replace("``", "`") + "\n")
        parts.append("\n| key | type | default | description |\n|---|---|---|---|\n")
        for name, info in model.model_fields.items():
            key = info.alias or name
            description = " ".join((info.description or "").split()).replace("|", "\\|").replace("``", "`")
            parts.append(f"| `{key}` | {_type_name(info.annotation)} | {_default(info)} | {description} |\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    return docgen.main(render, "helio_proxy.config.docgen", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
