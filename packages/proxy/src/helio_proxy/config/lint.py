"""Warnings about rules that load but cannot do what they say, with the file and line.

:func:`lint` reads the validated config beside the raw YAML data (before pydantic coerced it) and
returns one ``<file>:<line>: <dotted path>: <problem>`` line per finding:

* **shadowed rules**: an earlier rule matches every call a later one does (``tool: '*'`` with no
  other condition, the same tool glob, an identical match), so the later one never decides;
* **gates that can never be met**: ``evidence.requires`` keys no rule ``produces`` while the SDK
  sideband is off, so nothing can put them in a session;
* **keys the action ignores**: ``limits`` on an action that has none, ``limits.window`` /
  ``max_calls`` on ``spend_limit`` (its window is ``limits.max_spend.window``), ``max_spend`` on
  ``rate_limit``, ``approval`` off ``require_approval``, ``feedback`` on an ``allow`` that blocks
  nothing;
* **agent settings without agent authentication and the reverse**: ``match.agent`` with no
  ``listen.auth`` (it matches no call); ``forward_authorization: true`` under ``listen.auth`` (the
  token Helio checks is never relayed, so the upstream gets no agent ``Authorization``);
* **strings where numbers are expected** (``limit: '500'``): accepted, but a quoted number is
  usually a templating slip, and the same rule's ``input`` comparisons never match strings.

``helio validate`` prints them (``--strict`` makes them fatal), so do startup and every reload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, cast

from helio_proxy.config.policies import Match, Rule
from helio_proxy.config.root import HelioConfig

PathKey = tuple[str | int, ...]
LineOf = Callable[[PathKey], int | None]

GLOB_CHARS: Final = frozenset("*?[]{}")

NUMERIC_CONDITIONS: Final = ("gt", "gte", "lt", "lte")


def _get(data: Any, path: PathKey) -> Any:
    node: Any = data
    for part in path:
        if isinstance(part, int):
            items = cast(list[Any], node) if isinstance(node, list) else []
            node = items[part] if part < len(items) else None
        else:
            node = cast(Mapping[str, Any], node).get(part) if isinstance(node, Mapping) else None
    return node


def _dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _only_tool(match: Match) -> bool:
    """The match says nothing but (at most) a tool glob."""
    return match.model_fields_set <= {"tool"}


def _covers(earlier: Match, later: Match) -> bool:
    """Whether every call ``later`` matches is matched by ``earlier`` (conservative: only plain cases)."""
    if earlier == later:
        return True
    if not _only_tool(earlier):
        return False
    glob = earlier.tool
    if glob is None or glob == "*":
        return True
    if later.tool is None:
        return False
    if later.tool == glob:
        return True
    if GLOB_CHARS.intersection(later.tool):
        return False
    from helio_proxy.matching.glob import compile_glob  # the policy package imports the config models

    return compile_glob(glob)(later.tool)


def _label(index: int, rule: Rule) -> str:
    return f"rule {rule.name!r}" if rule.name else f"rule {index}"


def _shadowed(rules: list[Rule]) -> Iterator[tuple[PathKey, str]]:
    for later_index, later in enumerate(rules):
        for earlier_index, earlier in enumerate(rules[:later_index]):
            if _covers(earlier.match, later.match):
                yield (
                    ("policies", "rules", later_index, "match"),
                    f"{_label(later_index, later)} is never reached: {_label(earlier_index, earlier)} "
                    f"above it matches every call it matches (the first matching rule wins); move it up "
                    "or narrow the earlier rule",
                )
                break


def _unmeetable(config: HelioConfig) -> Iterator[tuple[PathKey, str]]:
    if config.sdk.enabled:
        return
    produced = {
        rule.evidence.produces
        for _, _, rule in config.all_rules()
        if rule.evidence and rule.evidence.produces
    }
    for index, rule in enumerate(config.policies.rules):
        if rule.evidence is None:
            continue
        for position, item in enumerate(rule.evidence.items()):
            if item.key not in produced:
                yield (
                    ("policies", "rules", index, "evidence", "requires", position),
                    f"evidence {item.key!r} can never be present: sdk.enabled is false and no rule "
                    f"produces it (evidence.produces), so {_label(index, rule)} blocks every call; "
                    "enable the sdk or add a rule that produces it",
                )


def _ignored(index: int, rule: Rule) -> Iterator[tuple[PathKey, str]]:
    at: PathKey = ("policies", "rules", index)
    action = rule.effective_action
    limits = rule.limits
    if limits is not None and action not in ("rate_limit", "spend_limit"):
        yield (*at, "limits"), f"'limits' is ignored: action {action!r} has no limits"
    elif limits is not None and action == "spend_limit":
        for key in ("window", "max_calls"):
            if key in limits.model_fields_set:
                yield (
                    (*at, "limits", key),
                    f"limits.{key} is ignored by 'spend_limit' (its window is limits.max_spend.window, "
                    f"{limits.max_spend.window if limits.max_spend else '24h'} here)",
                )
    elif limits is not None and action == "rate_limit" and limits.max_spend is not None:
        yield (
            (*at, "limits", "max_spend"),
            "limits.max_spend is ignored by 'rate_limit' (use action 'spend_limit')",
        )
    if rule.approval is not None and action != "require_approval":
        yield (*at, "approval"), f"'approval' is ignored: action {action!r} never asks for approval"
    if rule.feedback is not None and action == "allow" and not rule.is_gate:
        yield (*at, "feedback"), "'feedback' is never shown: an allow rule without a gate blocks nothing"


def _numbers(config: HelioConfig, data: Any) -> Iterator[tuple[PathKey, str]]:
    paths: list[PathKey] = []
    for index, rule in enumerate(config.policies.rules):
        at: PathKey = ("policies", "rules", index)
        paths += [
            (*at, "limits", "max_calls"),
            (*at, "limits", "max_spend", "limit"),
            (*at, "approval", "quorum"),
        ]
        for path in rule.match.input or {}:
            paths += [(*at, "match", "input", path, op) for op in NUMERIC_CONDITIONS]
    paths += [("budgets", index, "limit") for index in range(len(config.budgets))]
    paths.append(("approval", "quorum"))
    for path in paths:
        value = _get(data, path)
        if isinstance(value, str):
            yield (
                path,
                f"{value!r} is a string where a number is expected; write {value.strip()} without quotes",
            )


def _agents(config: HelioConfig) -> Iterator[tuple[PathKey, str]]:
    if config.listen.auth is None:
        for index, rule in enumerate(config.policies.rules):
            if rule.match.agent is not None:
                yield (
                    ("policies", "rules", index, "match", "agent"),
                    f"{_label(index, rule)} matches no call: agents are not authenticated (set listen.auth)",
                )
        return
    upstreams: list[tuple[PathKey, bool]] = []
    if config.upstream is not None:
        upstreams.append((("upstream",), config.upstream.forward_authorization))
    for index, upstream in enumerate(config.upstreams or []):
        upstreams.append((("upstreams", index), upstream.forward_authorization))
    for path, forwards in upstreams:
        if forwards:
            yield (
                (*path, "forward_authorization"),
                "relays nothing under listen.auth: the token Helio checks is never passed upstream "
                "(use upstream.headers or credentials for the upstream's own credential)",
            )


def lint(config: HelioConfig, data: Any, source: str, line_of: LineOf) -> list[str]:
    """Every warning, as ``<source>:<line>: <path>: <problem>`` (see the module docstring)."""
    rules = config.policies.rules
    found: list[tuple[PathKey, str]] = [*_shadowed(rules), *_unmeetable(config)]
    for index, rule in enumerate(rules):
        found.extend(_ignored(index, rule))
    found.extend(_numbers(config, data))
    found.extend(_agents(config))
    out: list[str] = []
    for path, problem in found:
        line = line_of(path)
        where = f"{source}:{line}" if line is not None else source
        out.append(f"{where}: {_dotted(path)}: {problem}")
    return out
