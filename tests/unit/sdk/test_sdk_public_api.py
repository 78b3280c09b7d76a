import importlib.metadata
import importlib.resources
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import helio
import helio.testing

PYPROJECT = Path(__file__).resolve().parents[3] / "packages" / "sdk" / "pyproject.toml"


def test_the_public_names_of_helio_are_exactly_these():
    assert helio.__all__ == [
        "Blocked",
        "CompletedTool",
        "DeclaredDependency",
        "EvidenceEntry",
        "EvidenceReceipt",
        "EvidenceStateReport",
        "HelioAuthError",
        "HelioClient",
        "HelioConnectionError",
        "HelioContext",
        "HelioError",
        "HelioForbiddenError",
        "HelioHTTPError",
        "HelioNotSidebandError",
        "HelioPayloadTooLargeError",
        "HelioProtocolError",
        "HelioSerializationError",
        "HelioTimeoutError",
        "HelioValidationError",
        "SessionState",
        "Transport",
        "TransportRequest",
        "TransportResponse",
        "UrllibTransport",
        "__version__",
        "blocked",
        "call_id_of",
        "current_context",
        "instrument",
        "uninstrument",
    ]


def test_the_public_names_of_helio_testing_are_exactly_these():
    assert helio.testing.__all__ == ["FakeSideband", "ManualClock", "RecordedCall"]


def test_every_exported_name_exists_and_is_listed_once_in_sorted_order():
    for module in (helio, helio.testing):
        assert module.__all__ == sorted(module.__all__)
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name


def test_exported_classes_and_functions_present_themselves_as_public_helio_names():
    for name in helio.__all__:
        obj = getattr(helio, name)
        if callable(obj) and name != "Transport":
            assert obj.__module__.startswith("helio"), name
            assert obj.__doc__, f"{name} has no docstring"


def test_version_matches_the_distribution_metadata():
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert helio.__version__ == declared == importlib.metadata.version("helio-sdk")


def test_distribution_declares_no_runtime_dependencies():
    assert tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"] == []
    assert not importlib.metadata.requires("helio-sdk")


def test_package_ships_the_py_typed_marker():
    assert importlib.resources.files("helio").joinpath("py.typed").is_file()


def test_importing_helio_and_helio_testing_loads_only_standard_library_modules():
    """DESIGN.md section 5: the SDK is stdlib-only at runtime."""
    probe = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import helio, helio.testing\n"
        "loaded = {name.partition('.')[0] for name in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(loaded - set(sys.stdlib_module_names) - {'helio'})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == []
