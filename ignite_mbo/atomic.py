"""Writing a file all at once: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a hidden temp file next to ``path``, then rename it over ``path``.

    The rename is atomic on one filesystem; if ``write`` raises, ``path`` is untouched and the temp
    file is removed. The file is readable by all (0644), as a plain write would leave it. Returns ``path``.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    partial = Path(name)
    try:
        write(partial)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno and not error.filename:  # a failed write names no file
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    return path
