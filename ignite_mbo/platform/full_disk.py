"""A disk that fills mid-sweep: one line, a non-zero exit, and no MLflow run left RUNNING.

Once the disk under a sqlite store is full, not even a run's status can be written, so the runs of
a sweep that dies of it would stay RUNNING for ever. While a sweep runs, a small :class:`Ballast`
file (real blocks, not a sparse file) sits beside ``mlflow.db``. When the sweep fails with "no space
left on device" or SQLite's "database or disk is full" anywhere (trials, Tune, the finish path),
:func:`fail_sweep` frees the ballast first, then marks the sweep's runs still RUNNING (parent and
trials) FAILED with tag ``ignite_mbo.error`` saying why, and raises a one-line UserError naming the
fix: free space, then ``--resume`` (which runs the failed trials again), or a fresh sweep when Tune's saved
state itself was cut short (:mod:`~ignite_mbo.platform.resume_files`). The ballast is removed on every way
out; one left by a killed sweep is removed by the next sweep that opens the store.

A disk that fills under the sweep folder or Tune's storage path (not the store's) shows up in other
guises, such as Ray failing to read back its own truncated ``error.pkl`` (``EOFError``); so a failure
is also taken as a full disk when one of the sweep's ``watched`` folders has less than
:data:`FULL_BELOW` bytes free, and the line names that folder.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from ignite_mbo.errors import UserError
from ignite_mbo.store_guard import sqlite_path

BALLAST_BYTES = 4 * 2**20
"""Space held back beside a sqlite store for closing a sweep's runs once its disk is full."""
BALLAST_SUFFIX = ".reserve-"
"""``mlflow.db.reserve-<pid>``: one per sweep process, so sweeps sharing a store never free each other's."""
FULL_DISK = "the disk filled up during the sweep (no space left on the device); free space, then resume it"
"""The reason recorded on the runs a full disk stopped."""
RUN_FULL = "the disk filled up during the run (no space left on the device); free space, then run it again"
"""The reason recorded on an ``ignite-mbo run`` run a full disk stopped."""
FULL_BELOW = 2**20
"""A watched folder whose disk has fewer free bytes than this is full, for a sweep."""
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_WORDS = ("no space left on device", "database or disk is full", "disk is full", "disk quota exceeded")


def says_disk_full(text: str) -> bool:
    """Whether an error's text says the disk is full."""
    return any(words in text.lower() for words in _FULL_WORDS)


def is_disk_full(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised from or during, says the disk is full."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            return True
        if says_disk_full(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def full_folders(watched: Sequence[Path]) -> list[Path]:
    """The folders of ``watched`` (or their nearest existing parent) whose disk has under FULL_BELOW bytes free."""
    full = []
    for folder in watched:
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        try:
            if existing is not None and shutil.disk_usage(existing).free < FULL_BELOW:
                full.append(folder)
        except OSError:
            continue
    return full


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Ballast:
    """A preallocated file beside the sqlite store of ``tracking_uri`` (none for a server), held while a
    sweep runs and freed when its disk fills. Creating it is best effort: a disk too full for it is
    reported by the store itself."""

    def __init__(self, tracking_uri: str, size: int = BALLAST_BYTES, share: float = 1.0) -> None:
        store = sqlite_path(tracking_uri)
        self.size = size
        if store is not None and share < 1.0:  # at most ``share`` of the free space (a small disk still gets one)
            try:
                self.size = max(4096, min(size, int(shutil.disk_usage(store.parent).free * share)))
            except OSError:
                pass
        self.path: Path | None = store.with_name(f"{store.name}{BALLAST_SUFFIX}{os.getpid()}") if store else None

    def __enter__(self) -> Ballast:
        if self.path is None:
            return self
        for stale in self.path.parent.glob(f"{self.path.name.rsplit('-', 1)[0]}-*"):  # left by killed sweeps
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                stale.unlink(missing_ok=True)
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(descriptor, 0, self.size)  # real blocks: a sparse file would free nothing
            finally:
                os.close(descriptor)
        except OSError:
            self.release()
        return self

    def release(self) -> None:
        """Free the held space (at once: nothing else holds the file open)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()


@contextmanager
def quiet_store() -> Iterator[None]:
    """No traceback from MLflow's SQL store logger while closing: a failure here is reported in one line."""
    logger = logging.getLogger("mlflow.store.db.utils")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def _close_after(close: Callable[[str, str], None], status: str, error: BaseException, ballast: Ballast,
                 full: bool, full_reason: str) -> bool | None:
    """Close with ``close(status, error's text)``, or, when the disk is full (``full``, ``error`` or closing says
    so), free ``ballast`` first and close FAILED with ``full_reason``. None: not a full disk, closed as usual;
    else whether the full-disk close got written."""
    if not full and not is_disk_full(error):
        try:
            with quiet_store():
                close(status, f"{type(error).__name__}: {error}")
            return None
        except Exception as closing:  # noqa: BLE001 - only a full disk is handled here
            if not is_disk_full(closing):
                raise
    ballast.release()
    try:
        with quiet_store():
            close("FAILED", full_reason)
        return True
    except Exception as closing:  # noqa: BLE001 - only a full disk is handled here
        if not is_disk_full(closing):
            raise
        return False


def fail_sweep(close: Callable[[str, str], None], error: BaseException, ballast: Ballast, hint: str,
               watched: Sequence[Path] = ()) -> None:
    """Close the sweep's runs FAILED after ``error`` with ``close(status, reason)``. When the disk is full
    (``error`` says so, closing does, or a ``watched`` folder's disk is), free ``ballast`` first, close them
    with :data:`FULL_DISK`, and raise a one-line UserError ending with ``hint`` (how to resume); else return
    for ``error`` to go on."""
    full = full_folders(watched)
    closed = _close_after(close, "FAILED", error, ballast, bool(full), FULL_DISK)
    if closed is None:
        return
    where = f" under {', '.join(str(folder) for folder in full)}" if full else ""
    done = ("its MLflow runs are closed (FAILED; a trial Tune stopped, KILLED)" if closed
            else "its MLflow runs could not be closed yet (--resume closes them)")
    room = "there" if full else "on the disk of the tracking store and the output folder"
    raise UserError(f"the disk filled up during the sweep (no space left on the device{where}); {done}. Free space "
                    f"{room}, then {hint}") from None


def close_run(close: Callable[[str, str], None], status: str, error: BaseException, ballast: Ballast) -> None:
    """Close ``ignite-mbo run``'s MLflow run as ``status`` after ``error`` with ``close(status, reason)``. When
    the disk is full (``error`` or closing says so), free ``ballast`` first, close it FAILED with
    :data:`RUN_FULL` and raise a one-line UserError; else return for ``error`` to go on."""
    closed = _close_after(close, status, error, ballast, False, RUN_FULL)
    if closed is None:
        return
    done = "its MLflow run is marked FAILED" if closed else "its MLflow run could not be closed (it stays RUNNING)"
    raise UserError(f"the disk filled up during the run (no space left on the device); {done}. Free space on "
                    "the disk of the tracking store, then run it again") from None
