"""Reading ``helio.yaml``: YAML with line numbers, ``${VAR}`` / ``${VAR:-default}`` interpolation,
validation.

Every failure is a :class:`ConfigError` whose text is one line naming the file, the line, the
dotted path and what to do about it. A loaded config knows which environment variables it
substituted (none of them reaches a stdio upstream) and its hash is taken over what is in force
(:mod:`helio_proxy.config.digest`).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import types as pytypes
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import yaml
from pydantic import BaseModel, ValidationError

from helio_proxy.config.digest import config_digest
from helio_proxy.config.lint import lint
from helio_proxy.config.root import HelioConfig
from helio_proxy.errors import ConfigError

ENV_PATTERN: Final = re.compile(r"\$\{([^}]*)\}")
ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_SEPARATOR: Final = ":-"
"""``${VAR:-default}``: as in the shell, ``default`` stands in when ``VAR`` is unset or empty."""

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with where it came from."""

    config: HelioConfig
    path: Path
    sha256: str
    """The config hash (:func:`~helio_proxy.config.digest.config_digest` of the config in force,
    after ``${VAR}`` substitution): recorded on audit records, bound into approval tickets."""
    warnings: list[str] = field(default_factory=list[str])
    replaced: Mapping[str, Any] | None = None
    """Top-level sections set over the file's (``helio wrap``'s upstream); reloads set them too."""
    referenced_env: frozenset[str] = frozenset()
    """The environment variables the file names as ``${VAR}`` (withheld from stdio upstreams)."""
    file_sha256: str = ""
    """Digest of the file's bytes (a reload of unchanged bytes does nothing)."""
    lint: tuple[str, ...] = ()
    """The rule warnings of :func:`~helio_proxy.config.lint.lint`, with file and line (also in ``warnings``)."""


def format_path(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "(top level)"


class _LineIndex:
    """Line numbers (1-based) of every mapping key and sequence item in a YAML document."""

    def __init__(self, root: yaml.Node | None, source: str) -> None:
        self.lines: dict[PathKey, int] = {}
        self.source = source
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: PathKey) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    raise ConfigError(
                        f"duplicate key {key!r}",
                        source=self.source,
                        line=key_node.start_mark.line + 1,
                        path=format_path((*path, key)),
                    )
                seen.add(key)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def line_for(self, path: PathKey) -> int | None:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _interpolate(value: Any, path: PathKey, env: Mapping[str, str], index: _LineIndex, used: set[str]) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            reference = match.group(1)
            name, separator, default = reference.partition(DEFAULT_SEPARATOR)
            line, dotted = index.line_for(path), format_path(path)
            if not ENV_NAME.match(name):
                raise ConfigError(
                    f"invalid environment variable reference ${{{reference}}}",
                    source=index.source,
                    line=line,
                    path=dotted,
                )
            if separator:
                return env.get(name) or default
            if name not in env:
                raise ConfigError(
                    f'environment variable "{name}" is not set (or give a default: ${{{name}:-VALUE}})',
                    source=index.source,
                    line=line,
                    path=dotted,
                )
            used.add(name)
            return env[name]

        return ENV_PATTERN.sub(substitute, value)
    if isinstance(value, dict):
        mapping = cast(dict[Any, Any], value)
        return {k: _interpolate(v, (*path, str(k)), env, index, used) for k, v in mapping.items()}
    if isinstance(value, list):
        items = cast(list[Any], value)
        return [_interpolate(v, (*path, i), env, index, used) for i, v in enumerate(items)]
    return value


def _child(node: Any, part: str | int) -> Any:
    return node[part]


def _data_path(data: Any, loc: tuple[str | int, ...]) -> PathKey:
    """Map a pydantic error location onto the document, skipping union/validator tags."""
    path: list[str | int] = []
    node: Any = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(cast(list[Any], node))
        ):
            path.append(part)
            node = _child(node, part)
        elif isinstance(part, str) and not isinstance(node, dict | list) and path:
            continue
        elif (
            isinstance(node, dict)
            and isinstance(part, str)
            and ("[" in part or part in ("dashboard", "webhook", "slack"))
        ):
            continue  # tagged-union or validator wrapper names
        else:
            path.append(part)
            node = None
    return tuple(path)


def _known_keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _resolve(annotation: Any, node: Any) -> Any:
    """Strip Optional/Annotated; pick the tagged-union arm that ``node`` selects by its ``type``."""
    for _ in range(6):
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            annotation = args[0]
        elif origin in (typing.Union, pytypes.UnionType):
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            others = [a for a in args if a is not type(None) and a not in models]
            if len(models) > 1 and isinstance(node, dict):
                tag = node.get("type")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
                chosen = [m for m in models if typing.get_args(m.model_fields["type"].annotation) == (tag,)]
                return chosen[0] if chosen else None
            annotation = models[0] if len(models) == 1 else (others[0] if others else None)
        else:
            return annotation
    return annotation


def _model_at(path: PathKey, data: Any) -> type[BaseModel] | None:
    """The config model whose keys live at ``path`` in ``data`` (for 'did you mean' hints)."""
    annotation: Any = HelioConfig
    node: Any = data
    for part in path:
        annotation = _resolve(annotation, node)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {info.alias or name: info for name, info in annotation.model_fields.items()}
            if part not in fields:
                return None
            annotation = fields[part].annotation
        elif origin in (list, dict):
            annotation = typing.get_args(annotation)[-1]
        else:
            return None
        node = _child(node, part) if isinstance(node, dict | list) else None
    annotation = _resolve(annotation, node)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _first_error(exc: ValidationError, data: Any, index: _LineIndex) -> ConfigError:
    errors = exc.errors(include_url=False)
    # A union reports every arm; the extra-key and missing-key errors are the most useful.
    errors.sort(key=lambda e: {"extra_forbidden": 0, "missing": 1}.get(e["type"], 2))
    error = errors[0]
    path = _data_path(data, tuple(error["loc"]))
    line = index.line_for(path)
    if error["type"] == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        parent = path[:-1]
        known = _known_keys(_model_at(parent, data))
        hint = difflib.get_close_matches(key, known, n=1)
        tail = (
            f" (did you mean {hint[0]!r}?)" if hint else (f" (allowed: {', '.join(known)})" if known else "")
        )
        return ConfigError(
            f"unknown key {key!r}{tail}", source=index.source, line=line, path=format_path(path)
        )
    if error["type"] == "missing":
        return ConfigError("required key is missing", source=index.source, line=line, path=format_path(path))
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    return ConfigError(message, source=index.source, line=line, path=format_path(path))


def parse_config_text(
    text: str,
    *,
    source: str = "<string>",
    env: Mapping[str, str] | None = None,
    replace: Mapping[str, Any] | None = None,
) -> HelioConfig:
    """Validate config text; raise :class:`ConfigError` on the first problem.

    ``replace`` sets top-level sections after interpolation (a ``None`` value removes one):
    ``helio wrap`` puts its command in place of the file's ``upstream``.
    """
    return _parse(text, source, env, replace)[0]


def load_config_text(
    text: str,
    *,
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    replace: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Validate config text read from ``path`` (or made up for it): a :class:`LoadedConfig`."""
    config, used, data, index = _parse(text, str(path), env, replace)
    found = lint(config, data, str(path), index.line_for)
    return LoadedConfig(
        config=config,
        path=Path(path),
        sha256=config_digest(config),
        warnings=[*config.warnings(), *found],
        lint=tuple(found),
        replaced=replace,
        referenced_env=frozenset(used),
        file_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def _parse(
    text: str, source: str, env: Mapping[str, str] | None, replace: Mapping[str, Any] | None
) -> tuple[HelioConfig, set[str], dict[str, Any], _LineIndex]:
    """The validated config, the environment variables substituted into it, the data it was
    validated from and the file's line index."""
    environ = os.environ if env is None else env
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        # Constructing can fail where composing did not (a tag like '=' with no constructor, a
        # bad timestamp): found by the fuzz suite, it escaped as a bare yaml error.
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"invalid YAML: {problem}", source=source, line=mark.line + 1 if mark else None
        ) from exc
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", source=source) from None
    index = _LineIndex(root, source)
    if data is None:
        raise ConfigError("the file is empty; run 'helio init' to write a starting config", source=source)
    if not isinstance(data, dict):
        raise ConfigError(
            "the top level must be a mapping (version: '1', upstream: ...)", source=source, line=1
        )
    used: set[str] = set()
    data = _interpolate(data, (), environ, index, used)
    for key, value in (replace or {}).items():
        data.pop(key, None)
        if value is not None:
            data[key] = value
    try:
        return HelioConfig.model_validate(data), used, data, index
    except ValidationError as exc:
        raise _first_error(exc, data, index) from None


def load_config(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    replace: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Read and validate a config file."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "config file not found; create one with 'helio init' or pass -c FILE", source=str(file)
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=str(file)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("config file is not UTF-8 text", source=str(file)) from None
    return load_config_text(text, path=file, env=env, replace=replace)
