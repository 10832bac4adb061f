"""Writing a file all at once: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path


def stage(path: Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a new hidden temp file next to ``path`` (a unique name, so concurrent writers of one
    ``path`` never share it), readable by all (0644) as a plain write would leave it. Returns the temp file.

    If ``write`` raises, the temp file is removed, and an ``OSError`` that names no file or the temp file is
    raised again naming ``path``."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    staged = Path(name)
    try:
        write(staged)
        os.chmod(staged, 0o644)
    except BaseException as error:
        staged.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno and error.filename in (None, "", name, staged):
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    return staged


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a hidden temp file next to ``path`` (:func:`stage`), then rename it over ``path``.

    The rename is atomic on one filesystem; if ``write`` raises, ``path`` is untouched and the temp
    file is removed. Returns ``path``."""
    return atomic_write_all({path: write})[0]


def atomic_write_all(contents: dict[Path, bytes | Callable[[Path], object]]) -> list[Path]:
    """Write every file of ``contents`` (its bytes, or a function that writes it) or none: each is first staged
    (:func:`stage`), and only once all are staged are they renamed into place (a rename needs no space). If staging
    fails (a full disk), no file is changed, the temp files are removed, and the error names the file being
    written. Returns the paths."""
    staged: list[Path] = []
    try:
        for path, data in contents.items():
            write = partial(Path.write_bytes, data=data) if isinstance(data, bytes) else data
            staged.append(stage(path, write))
        for ready, path in zip(staged, contents, strict=True):
            os.replace(ready, path)
    except BaseException:
        for ready in staged:
            ready.unlink(missing_ok=True)
        raise
    return list(contents)


@contextlib.contextmanager
def new_folders(path: Path) -> Iterator[None]:
    """Make ``path`` with its missing parents for the block; if making them or the block fails (a full disk, out of
    inodes), the folders made here are removed again, deepest first, where they are still empty."""
    path = Path(path)
    made = [folder for folder in (path, *path.parents) if not folder.exists()]  # deepest first
    try:
        path.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
