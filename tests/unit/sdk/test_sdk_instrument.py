"""``helio.instrument()`` with nothing but the standard library: what it refuses and what it imports.

The libraries themselves are exercised in tests/integration/test_sdk_instrument.py.
"""

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

import helio
from helio import HelioContext


@pytest.fixture(autouse=True)
def _uninstrumented() -> Iterator[None]:
    yield
    helio.uninstrument()


@pytest.mark.parametrize(
    "url", ["", "127.0.0.1:3000", "ftp://127.0.0.1/mcp", "http:///mcp", "http://h:99999/"]
)
def test_a_proxy_url_that_is_not_http_with_a_host_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        helio.instrument(proxy_urls=[url])


def test_an_empty_list_of_proxy_urls_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        helio.instrument(proxy_urls=[])


def test_an_unknown_library_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"\['urllib3'\].*aiohttp"):
        helio.instrument(libraries=["httpx", "urllib3"])


def test_instrument_and_uninstrument_in_a_fresh_interpreter_import_no_third_party_module() -> None:
    """DESIGN.md section 5: the SDK is stdlib-only; a library is touched only once it is imported."""
    probe = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import helio\n"
        "helio.instrument(proxy_urls=['http://127.0.0.1:3000/mcp'])\n"
        "with helio.HelioContext('http://127.0.0.1:9', 's', token='', instrument=True):\n"
        "    import csv, email.parser\n"
        "helio.uninstrument()\n"
        "loaded = {name.partition('.')[0] for name in set(sys.modules) - before}\n"
        "hooks = [type(f).__name__ for f in sys.meta_path if type(f).__module__.startswith('helio')]\n"
        "print(json.dumps({'third_party': sorted(loaded - set(sys.stdlib_module_names) - {'helio'}),"
        " 'hooks_left': hooks}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == {"third_party": [], "hooks_left": []}


def test_meta_carries_the_session_under_the_helio_key() -> None:
    ctx = HelioContext("http://127.0.0.1:9", "run-42", token="")
    assert ctx.meta == {"io.gethelio/session-id": "run-42"}
    ctx.meta["io.gethelio/session-id"] = "changed"
    assert ctx.meta == {"io.gethelio/session-id": "run-42"}
