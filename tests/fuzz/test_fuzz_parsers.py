"""Hostile input on the parsers an operator or an agent can reach: the JSON caps (checked against
a reference computed on the parsed value), the config loader, JSONPath, the regex vetting and the
policy matchers. Each may refuse an input only with its own documented error, never crash, and an
accepted regular expression must stay fast on a long subject. (``nox -s fuzz`` also runs atheris,
coverage-guided, over the same parsers: tests/fuzz/atheris_parsers.py.)"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from pathlib import Path
from typing import Any, Final

from hypothesis import given
from hypothesis import strategies as st

from helio_proxy.config import parse_config_text
from helio_proxy.errors import ConfigError
from helio_proxy.jsonlimits import InputLimitExceeded, JsonLimits, check
from helio_proxy.matching.jsonpath import PathError, parse_path
from helio_proxy.matching.regex_safety import UnsafeRegex, check_regex
from helio_proxy.policy.engine import compile_policy
from helio_proxy.policy.facts import CallFacts
from tests.fuzz.strategies import json_values
from tests.fuzz.support import PARSER_SHARE, TALLY, fuzz_settings, variants

SMALL: Final = JsonLimits(max_depth=4, max_string_length=12, max_array_length=5)
EXAMPLES: Final = sorted((Path(__file__).parents[2] / "examples").rglob("*.yaml"))
SEEDS: Final = [path.read_text(encoding="utf-8") for path in EXAMPLES]

deep_values = st.recursive(
    st.none() | st.integers() | st.text(max_size=16) | st.sampled_from(['"', "\\", "[", "{", "]", "é\n"]),
    lambda inner: st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=14), inner, max_size=7),
    max_leaves=40,
)


def _reference(value: Any, depth: int = 0) -> tuple[int, int, int]:
    """(depth, longest string as encoded in bytes, longest array/object) of a parsed value."""
    if isinstance(value, list):
        children = [_reference(v, depth + 1) for v in value]
        return (
            max([depth + 1, *(c[0] for c in children)]),
            max([0, *(c[1] for c in children)]),
            max([len(value), *(c[2] for c in children)]),
        )
    if isinstance(value, dict):
        children = [_reference(v, depth + 1) for v in value.values()]
        keys = [len(json.dumps(k, ensure_ascii=False).encode()) - 2 for k in value]
        return (
            max([depth + 1, *(c[0] for c in children)]),
            max([0, *keys, *(c[1] for c in children)]),
            max([len(value), *(c[2] for c in children)]),
        )
    if isinstance(value, str):
        return depth, len(json.dumps(value, ensure_ascii=False).encode()) - 2, 0
    return depth, 0, 0


@given(value=deep_values, seed=st.integers(0, 2**32))
@fuzz_settings(share=PARSER_SHARE)
def test_the_byte_level_caps_agree_with_the_parsed_value(value: Any, seed: int) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode()
    depth, longest, widest = _reference(value)
    expected = (
        "max_json_depth"
        if depth > SMALL.max_depth
        else "max_string_length"
        if longest > SMALL.max_string_length
        else "max_array_length"
        if widest > SMALL.max_array_length
        else None
    )
    try:
        check(raw, SMALL)
        found = None
    except InputLimitExceeded as exc:
        found = exc.limit
    breached = {
        "max_json_depth": depth > SMALL.max_depth,
        "max_string_length": longest > SMALL.max_string_length,
        "max_array_length": widest > SMALL.max_array_length,
    }
    assert (found is None) == (expected is None), (raw, found, expected)
    assert found is None or breached[found], (raw, found)
    for mutated in variants(raw, seed):
        with contextlib.suppress(InputLimitExceeded):
            check(mutated, SMALL)
    TALLY["parser: JSON caps (jsonlimits.check)"] += 16


@given(
    text=st.sampled_from(SEEDS) | st.text(max_size=200),
    seed=st.integers(0, 2**32),
)
@fuzz_settings(share=PARSER_SHARE)
def test_the_config_loader_refuses_hostile_yaml_only_with_a_config_error(text: str, seed: int) -> None:
    for raw in [text.encode(), *variants(text.encode(), seed)]:
        try:
            parse_config_text(raw.decode("utf-8", "replace"), source="fuzz.yaml")
        except ConfigError as exc:
            assert str(exc)  # noqa: PT017
        TALLY["parser: config loader (YAML)"] += 1


def _utf8(text: str) -> bytes:
    """The text's bytes, a lone surrogate (which ``st.characters()`` draws) kept as its 3 bytes."""
    return text.encode("utf-8", "surrogatepass")


_path_alphabet = st.sampled_from(list("$.[]*'\"\\0123456789-abc_ é")) | st.characters()


@given(text=st.text(_path_alphabet, max_size=30), document=json_values, seed=st.integers(0, 2**32))
@fuzz_settings(share=PARSER_SHARE)
def test_jsonpath_parses_or_says_why_and_resolves_any_document(text: str, document: Any, seed: int) -> None:
    # The text itself too: a JSON body can carry a lone surrogate ("\ud86d") into a path.
    for source in [text, *(raw.decode("utf-8", "replace") for raw in variants(_utf8(text), seed))]:
        try:
            path = parse_path(source)
        except PathError as exc:
            assert str(exc)  # noqa: PT017
        else:
            assert isinstance(path.resolve(document), list)
        TALLY["parser: JSONPath"] += 1


_regex_alphabet = st.sampled_from(list("()[]{}*+?|^$\\.-,:=!<>0123456789abcdwsWSDb")) | st.characters()
SUBJECTS: Final = ["a" * 5_000 + "!", "ab" * 2_500 + "\n", "0" * 5_000 + "x", " " * 5_000 + "é"]


@given(pattern=st.text(_regex_alphabet, max_size=24), seed=st.integers(0, 2**32))
@fuzz_settings(share=PARSER_SHARE)
def test_regex_vetting_refuses_or_the_pattern_stays_fast(pattern: str, seed: int) -> None:
    for raw in [pattern, *(raw.decode("utf-8", "replace") for raw in variants(_utf8(pattern), seed))]:
        try:
            with warnings.catch_warnings():
                # "Possible nested set" and the like: warnings in production, errors under pytest.
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                compiled = check_regex(raw)
        except UnsafeRegex as exc:
            assert str(exc)  # noqa: PT017
        except RecursionError:
            pass  # the stdlib parser's own limit on a pathological nest: refused at load time as well
        else:
            started = time.perf_counter()
            for subject in SUBJECTS:
                compiled.search(subject)
            assert time.perf_counter() - started < 1.0, raw
        TALLY["parser: regex vetting"] += 1


_conditions = st.fixed_dictionaries(  # filtered below: a condition needs an operator
    {},
    optional={
        "eq": json_values,
        "gt": st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
        "lte": st.integers(),
        "contains": st.text(max_size=6),
        "in": st.lists(json_values, max_size=4),
        "not_in": st.lists(json_values, max_size=4),
        "exists": st.booleans(),
        "regex": st.sampled_from(["^a", "b+$", "[0-9]{3}", "(x|y)"]),
    },
).filter(bool)
_input_paths = st.sampled_from(["$.amount", "$.items[*].price", "$.a.b", "$['we.ird']", "$.list[0]", "name"])


@given(
    conditions=st.dictionaries(_input_paths, _conditions, max_size=3),
    arguments=st.dictionaries(
        st.sampled_from(["amount", "items", "a", "we.ird", "list", "name"]), json_values
    ),
    seed=st.integers(0, 2**32),
)
@fuzz_settings(share=PARSER_SHARE)
def test_policy_matchers_compile_or_refuse_and_decide_any_arguments(
    conditions: dict[str, Any], arguments: dict[str, Any], seed: int
) -> None:
    rule = {"name": "r", "match": {"tool": "t*", "input": conditions}, "action": "deny"}
    text = json.dumps(
        {
            "version": "1",
            "upstream": {"url": "http://127.0.0.1:9/mcp"},
            "dashboard": {"enabled": False},
            "policies": {"rules": [rule]},
        }
    )
    try:
        config = parse_config_text(text, source="fuzz.yaml")
    except ConfigError:  # a condition the schema refuses (e.g. "gt" with a word): that is its answer
        TALLY["parser: policy matchers"] += 1
        return
    policy = compile_policy(config)
    encoded = json.dumps(arguments).encode()
    every: list[Any] = [None, arguments]
    for raw in variants(encoded, seed, 14):
        try:
            every.append(json.loads(raw))
        except ValueError:
            every.append(raw.decode("utf-8", "replace"))  # not an object: what a hostile agent could send
    for candidate in every:
        facts = CallFacts(
            tool="tool",
            arguments=candidate if isinstance(candidate, dict) or candidate is None else {"x": candidate},
        )
        assert policy.decide(facts).reason
        TALLY["parser: policy matchers"] += 1
