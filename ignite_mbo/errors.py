"""The one exception type that means "the user gave bad input", and how a value is shown in its line."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """Bad input from the user: the message is one line naming the problem and the fix.

    The CLI prints it as ``error: <message>`` and exits with status 2; everything else is a bug
    and keeps its traceback.
    """


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for an error line, cut to ``limit`` characters with its full length said (a 5 MB value
    stays one short line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def shown_path(path: object, limit: int = 160) -> str:
    """A path for an error line: whole up to ``limit`` characters, else its start and its end (the file's name)
    around a cut, with its full length said."""
    text = repr(str(path))
    if len(text) <= limit:
        return text
    keep = (limit - 3) // 2
    return f"{text[:keep]}...{text[-keep:]} ({len(text):,} characters)"


def path_error(error: OSError, written: Iterable[object] = ()) -> str | None:
    """One line for an OS error the user fixes by choosing another path or freeing space (permission denied, a
    name too long, a full disk, a file where a folder should be, a folder that cannot be made), else None. A full
    disk without a file name is named by the fullest of the paths among ``written`` (the command's arguments)."""
    if isinstance(error, PermissionError):
        return (f"permission denied: {error.filename or error}; make it readable (and writable where results go) "
                "or pick another path")
    where = shown_path(error.filename or "")
    if error.errno == errno.ENAMETOOLONG:
        return f"a path is too long for this file system ({where}); pass a shorter one"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fullest = None if error.filename else fullest_device(written)
        device = (f"the device that holds {where}" if error.filename
                  else f"the device that holds {shown_path(fullest[0])} ({fullest[1]:,} bytes free)" if fullest
                  else "a device this command writes to (its output folder, or the tracking store and its artifacts)")
        return f"no space left on {device}; free space there or pick another folder"
    if error.filename and error.errno in (errno.EEXIST, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EROFS):
        return f"{error.strerror}: {where}; check the path or pick another one"
    return None


def fullest_device(written: Iterable[object], below_bytes: int = 16 << 20) -> tuple[Path, int] | None:
    """Of the paths among ``written`` (paths, path strings, ``sqlite:///`` URIs, lists of them) and the working
    folder, the one whose device has the least room, with its free bytes, if under ``below_bytes``."""
    free: dict[Path, int] = {}
    for value in [*written, "."]:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            text = str(item).removeprefix("sqlite:///") if isinstance(item, (str, Path)) else ""
            if not text or "://" in text:
                continue
            path = Path(text).absolute()
            existing = next((folder for folder in [path, *path.parents] if folder.exists()), None)
            with contextlib.suppress(OSError):
                if existing is not None:
                    stats = os.statvfs(existing)
                    free[path] = stats.f_bavail * stats.f_frsize
    path, room = min(free.items(), key=lambda item: item[1], default=(Path("."), below_bytes))
    return (path, room) if room < below_bytes else None


def check_working_folder() -> None:
    """A working folder deleted under the shell is a one-line UserError (torch's MKL would abort its import)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise UserError("the working folder no longer exists (it was deleted after the shell entered it); cd to an "
                        "existing folder and run the command again") from None


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of ``error``'s message (its type's name when it has none), cut to ``limit`` characters:
    what a one-line error quotes of a library's exception."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on (NUL, CR, newlines, ANSI escapes) written as its
    escape (``\\x1b``), so quoting what a server or a file sent keeps an error one plain line."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
