"""``helio.instrument()`` with nothing but the standard library: what it refuses and what it imports.

The libraries themselves are exercised in tests/integration/test_sdk_instrument.py.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


FAKE_REQUESTS = """
class Session:
    def send(self, request, **kwargs):
        return dict(request.headers)
"""

PROBE = """
import json, sys, types, warnings
sys.path.insert(0, sys.argv[1])
import helio
helio.instrument(proxy_urls=["http://127.0.0.1:3000/mcp"], libraries=sys.argv[2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    module = __import__(sys.argv[2])
request = types.SimpleNamespace(url="http://127.0.0.1:3000/mcp", headers={})
elsewhere = types.SimpleNamespace(url="http://example.test/mcp", headers={})
sent = {}
if hasattr(module, "Session") and hasattr(module.Session, "send"):
    with helio.HelioContext("http://127.0.0.1:9", "s-1", token=""):
        sent = {"proxy": module.Session().send(request), "other": module.Session().send(elsewhere)}
    original = module.Session.send.__wrapped__
    helio.uninstrument()
    sent["restored"] = module.Session.send is original
print(json.dumps({"sent": sent, "warnings": [str(w.message) for w in caught]}))
"""


def _probe(tmp_path: Path, name: str, source: str) -> dict[str, Any]:
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text(source)
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(tmp_path), name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_a_library_imported_after_instrument_is_patched_as_it_is_imported(tmp_path: Path) -> None:
    """A stand-in ``requests`` package (this suite has no third-party library) goes through the import hook."""
    assert _probe(tmp_path, "requests", FAKE_REQUESTS) == {
        "sent": {"proxy": {"x-helio-session-id": "s-1"}, "other": {}, "restored": True},
        "warnings": [],
    }


def test_a_library_version_without_the_expected_function_is_left_alone_with_a_warning(
    tmp_path: Path,
) -> None:
    outcome = _probe(tmp_path, "requests", "class Session:\n    pass\n")
    assert outcome["sent"] == {}
    (warning,) = outcome["warnings"]
    assert warning.startswith("helio.instrument(): requests of unknown version is not instrumented: ")
    assert "send" in warning
