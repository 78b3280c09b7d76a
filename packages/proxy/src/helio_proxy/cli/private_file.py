"""Writing a file only its owner may read: a config holding a secret, an audit export."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Final

PRIVATE_MODE: Final = 0o600
"""Owner read and write, nobody else anything."""


def write_private(path: Path, text: str, *, newline: str | None = None) -> None:
    """Write ``text`` to ``path``, which ends up mode 0600 whatever was there before.

    The text goes to a new file in the same directory, created 0600 (so the secret is never
    readable by others, not even for a moment), flushed to disk, then renamed over ``path``
    in one step: an existing file's mode (say 0644) is not kept, and a reader never sees half
    a file. A symlink at ``path`` is replaced, not followed.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            os.fchmod(handle.fileno(), PRIVATE_MODE)  # mkstemp's mode already; said, not assumed
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
