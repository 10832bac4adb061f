"""The one exception type that means "the user gave bad input", and how a value is shown in its line."""

from __future__ import annotations

import errno
import os


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


def path_error(error: OSError) -> str | None:
    """One line for an OS error the user fixes by choosing another path or freeing space (permission denied, a
    name too long, a full disk, a file where a folder should be, a folder that cannot be made), else None."""
    if isinstance(error, PermissionError):
        return (f"permission denied: {error.filename or error}; make it readable (and writable where results go) "
                "or pick another path")
    where = shown(str(error.filename or ""))
    if error.errno == errno.ENAMETOOLONG:
        return f"a path is too long for this file system ({where}); pass a shorter one"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        device = (f"the device that holds {where}" if error.filename
                  else "a device this command writes to (its output folder, or the tracking store and its artifacts)")
        return f"no space left on {device}; free space there or pick another folder"
    if error.filename and error.errno in (errno.EEXIST, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EROFS):
        return f"{error.strerror}: {where}; check the path or pick another one"
    return None


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
