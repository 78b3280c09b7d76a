"""docs/sdk.md and docs/sideband-api.md cannot drift from the code."""

import re
from pathlib import Path

from helio import _wire

DOCS = Path(__file__).resolve().parents[3] / "docs"


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_the_fake_sideband_example_in_the_sdk_guide_passes():
    (example,) = [block for block in _python_blocks((DOCS / "sdk.md").read_text()) if "def test_" in block]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/sdk.md", "exec"), namespace)  # noqa: S102 - our own documentation

    tests = [value for name, value in namespace.items() if name.startswith("test_") and callable(value)]
    assert tests
    for test in tests:
        test()


def test_the_error_code_table_of_the_sideband_api_lists_exactly_the_wire_codes():
    text = (DOCS / "sideband-api.md").read_text()
    table = text[text.index("## Every error code") :]
    documented = set(re.findall(r"^\| \d{3} \| `([a-z_]+)` \|", table, flags=re.MULTILINE))

    codes = {value for name, value in vars(_wire).items() if name.startswith("CODE_")}
    assert documented == codes
