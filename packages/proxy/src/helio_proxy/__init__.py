"""Helio: an MCP governance proxy.

The public entry points are the ``helio`` console script (:mod:`helio_proxy.cli`) and
:func:`helio_proxy.config.load_config`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("helio-proxy")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["__version__"]
