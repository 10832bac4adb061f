"""Writing a file all at once: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import partial
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


def atomic_write_all(contents: dict[Path, bytes]) -> list[Path]:
    """Write every file of ``contents`` or none: each is first staged in a hidden temp file next to it, and only once
    all are staged are they renamed into place (a rename needs no space). If staging fails (a full disk), no file
    is changed, the temp files are removed, and the error names the file being written. Returns the paths."""
    staged: list[Path] = []
    try:
        for path, data in contents.items():
            staged.append(atomic_write(path.with_name(f".{path.name}.staged"), partial(Path.write_bytes, data=data)))
    except BaseException as error:
        for ready in staged:
            ready.unlink(missing_ok=True)
        if isinstance(error, OSError) and str(error.filename or "").endswith(".staged"):
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    for ready, path in zip(staged, contents, strict=True):
        os.replace(ready, path)
    return list(contents)
