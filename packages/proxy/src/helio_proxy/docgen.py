"""The command line shared by the generated references (``config``, ``cli`` and ``operator``
docgen modules): ``--write FILE`` writes the page, ``--check FILE`` exits 1 when it is stale.

Stdlib only, so the lowest layers (``config``) can use it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def main(render: Callable[[], str], module: str, description: str | None, argv: list[str] | None) -> int:
    """Write or check the page ``render()`` gives; ``module`` is named in the stale-page message."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", type=Path, metavar="FILE")
    mode.add_argument("--write", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    text = render()
    if args.write is not None:
        args.write.write_text(text, encoding="utf-8")
        return 0
    current = args.check.read_text(encoding="utf-8") if args.check.exists() else ""
    if current != text:
        sys.stderr.write(f"{args.check} is out of date: run python -m {module} --write {args.check}\n")
        return 1
    return 0
