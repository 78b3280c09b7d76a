"""Progress bars for long commands: on stderr, only when stderr is a terminal and the job is big.

Piped or redirected (scripts, CI logs), nothing is drawn, so output stays clean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from contextlib import contextmanager
from typing import Final

import click

PROGRESS_MIN_ITEMS: Final = 1000
"""Jobs smaller than this finish too fast for a bar to help; none is drawn."""


def _ignore(_: int) -> None:
    return None


@contextmanager
def progress(total: int, label: str) -> Generator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar of ``total`` steps when stderr is a terminal."""
    stream = sys.stderr
    if total < PROGRESS_MIN_ITEMS or not stream.isatty():
        yield _ignore
        return
    with click.progressbar(length=total, label=label, file=stream, show_pos=True) as bar:
        yield bar.update
