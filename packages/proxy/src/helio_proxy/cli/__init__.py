"""The ``helio`` command line.

Exit codes: 0 success; 1 invalid config or runtime failure; 2 bad command-line usage;
3 startup failure (port in use, unwritable file); 130 interrupted.
"""

from helio_proxy.cli import killswitch as _killswitch  # registers kill and resume on cli
from helio_proxy.cli import operations as _operations  # registers its commands on cli
from helio_proxy.cli.main import cli, main

del _killswitch, _operations

__all__ = ["cli", "main"]
