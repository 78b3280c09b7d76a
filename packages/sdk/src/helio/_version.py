"""The distribution version, kept in step with ``packages/sdk/pyproject.toml`` (a test checks it)."""

from typing import Final

__version__: Final = "0.1.0"
