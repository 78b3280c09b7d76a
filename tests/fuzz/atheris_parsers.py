"""Coverage-guided fuzzing (atheris) of the parsers: the JSON caps, the JSON-RPC envelope parser,
JSONPath, the regex vetting and the config loader. Run by ``nox -s fuzz``:

    HELIO_ATHERIS_TARGET=jsonrpc uv run --with 'atheris<3.1' python tests/fuzz/atheris_parsers.py -runs=100000

``HELIO_ATHERIS_TARGET`` picks one parser (:data:`TARGETS`); unset, each input picks one.
(atheris 3.1 ships no CPython 3.11 wheel, hence ``<3.1``.)

Any exception other than each parser's documented refusal is a crash: atheris stops, prints the
input and exits non-zero. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import atheris  # pyright: ignore[reportMissingImports]

with atheris.instrument_imports():  # pyright: ignore[reportUnknownMemberType]
    from helio_proxy import jsonrpc
    from helio_proxy.config import parse_config_text
    from helio_proxy.errors import ConfigError
    from helio_proxy.jsonlimits import InputLimitExceeded, JsonLimits, check
    from helio_proxy.matching.jsonpath import PathError, parse_path
    from helio_proxy.matching.regex_safety import UnsafeRegex, check_regex

SMALL = JsonLimits(max_depth=8, max_string_length=64, max_array_length=16)
TARGETS = ("jsonlimits", "jsonrpc", "jsonpath", "regex", "config")
FIXED = TARGETS.index(os.environ["HELIO_ATHERIS_TARGET"]) if os.environ.get("HELIO_ATHERIS_TARGET") else None
DOCUMENT = {"amount": 5, "items": [{"price": 1}, {"price": "2"}], "a": {"b": [None, True]}}


def one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)  # pyright: ignore[reportUnknownMemberType]
    target = FIXED if FIXED is not None else provider.ConsumeIntInRange(0, 4)
    raw: bytes = provider.ConsumeBytes(4096)
    text = raw.decode("utf-8", "replace")
    if target == 0:
        with contextlib.suppress(InputLimitExceeded):
            check(raw, SMALL)
    elif target == 1:
        with contextlib.suppress(jsonrpc.EnvelopeError):
            jsonrpc.parse_any(raw, SMALL)
    elif target == 2:
        with contextlib.suppress(PathError):
            parse_path(text).resolve(DOCUMENT)
    elif target == 3:
        with warnings.catch_warnings(), contextlib.suppress(UnsafeRegex, RecursionError):
            warnings.simplefilter("ignore")
            check_regex(text)
    else:
        with contextlib.suppress(ConfigError):
            parse_config_text(text, source="fuzz.yaml")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)  # pyright: ignore[reportUnknownMemberType]
    atheris.Fuzz()  # pyright: ignore[reportUnknownMemberType]
