"""``--resume``'s trust boundary for the files inside a sweep's Tune experiment.

Tune unpickles ``tuner.pkl``, ``trainable.pkl``, the searcher's state and every trial's files when it
restores a sweep. Checking only ``experiment_path`` is not enough: a ``tuner.pkl`` that is a symlink
to a pickle elsewhere would still be unpickled (and its code run). :func:`check_state_files` walks
the experiment folder without following links and refuses, before anything is read, any entry that
resolves outside the sweep folder, the experiment folder or the ``--storage-path`` given now, and any
file with a second name (a hard link: the same file may sit anywhere on the disk; Tune writes copies).
"""

from __future__ import annotations

import json
import os
import pickletools
from pathlib import Path

from ignite_mbo.errors import UserError
from ignite_mbo.platform.full_disk import says_disk_full

MAX_ENTRIES = 1_000_000
"""Entries walked at most (a real experiment holds a few per trial)."""


def local_path(path: str) -> Path | None:
    """``path`` as a local path, or None for remote storage (``s3://``, ``gs://``...)."""
    if path.startswith("file://"):
        return Path(path.removeprefix("file://"))
    return None if "://" in path else Path(path)


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def check_state_files(experiment_path: str, sweep_dir: Path, storage_path: str | None) -> None:
    """Refuse an entry under the local ``experiment_path`` (Tune's state files and folders) that is a
    link resolving outside ``sweep_dir``, the experiment folder or ``storage_path``; one-line UserError."""
    experiment = local_path(experiment_path)
    if experiment is None or not experiment.exists():
        return
    roots = [sweep_dir.resolve(), experiment.resolve()]
    storage = local_path(storage_path) if storage_path else None
    if storage is not None:
        roots.append(storage.resolve())
    walked = 0
    for folder, dirs, files in os.walk(experiment, followlinks=False):
        for name in (*dirs, *files):
            walked += 1
            entry = Path(folder) / name
            if walked > MAX_ENTRIES:
                raise UserError(f"{experiment} holds more than {MAX_ENTRIES:,} files; it is not a sweep's Tune "
                                "state: run the sweep again without --resume")
            if entry.is_symlink() and not _within(entry.resolve(), roots):
                raise UserError(f"{entry} links to {entry.resolve()}, outside the sweep folder; --resume "
                                "unpickles only Tune state inside it: remove the link, or run the sweep again "
                                "without --resume")
            if entry.exists() and not (entry.is_file() or entry.is_dir()):  # read, a FIFO would hang --resume
                raise UserError(f"{entry} is not a regular file (a pipe, a device or a socket among Tune's state); "
                                "remove it, or run the sweep again without --resume")
            if not entry.is_symlink() and entry.is_file() and entry.lstat().st_nlink > 1:
                raise UserError(f"{entry} is a hard link ({entry.lstat().st_nlink} names), so its contents may "
                                "live outside the sweep folder; --resume unpickles only Tune state written there: "
                                "replace it with a copy, or run the sweep again without --resume")


def _complete_pickle(path: Path) -> bool:
    """Whether ``path`` holds a whole pickle, read opcode by opcode without building anything (nothing runs)."""
    try:
        for _ in pickletools.genops(path.read_bytes()):
            pass
    except (OSError, ValueError, RecursionError):
        return False
    return True


def saved_state_problem(experiment_path: str) -> str | None:
    """What in the local Tune experiment at ``experiment_path`` would stop Tune restoring all of the sweep's trials,
    or None (also for remote storage, and for an experiment Tune never saved). Tune's state files are written in
    place, so a disk that fills while they are written leaves them cut short."""
    experiment = local_path(experiment_path)
    if experiment is None or not (experiment / "tuner.pkl").exists():
        return None
    states = sorted(experiment.glob("experiment_state-*.json"))
    try:
        trials = json.loads(states[-1].read_bytes())["trial_data"] if states else None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        trials = None
    if not isinstance(trials, list) and not states:
        return f"{experiment} lacks an experiment_state-*.json, Tune's record of the sweep's trials (deleted?)"
    if not isinstance(trials, list):
        return (f"{states[-1]}, the newest of Tune's records of the sweep's trials and the one it restores, cannot "
                "be read (cut short or written on a full disk)")
    newest: dict[str, Path] = {}  # the searcher's state (which trials are still to come), newest of each kind
    for state in sorted((*experiment.glob("*-state-*.json"), *experiment.glob("*-state-*.pkl"))):
        if not state.name.startswith("experiment_state-"):
            newest[state.name.split("-state-")[0]] = state
    for state in (experiment / "tuner.pkl", *newest.values()):
        if not _complete_pickle(state):
            return f"cannot restore the sweep's Tune state: {state} is cut short or damaged (written on a full disk?)"
    return None


def check_saved_state(experiment_path: str) -> None:
    """A local Tune experiment with a ``tuner.pkl`` must hold whole state files (:func:`saved_state_problem`):
    else Tune would restore some of the trials, or none, and the sweep would start over under ``--resume``."""
    problem = saved_state_problem(experiment_path)
    if problem is not None:
        raise UserError(f"{problem}; run the sweep again without --resume")


def says_passing(text: str) -> bool:
    """Whether an error's text says it came from a passing condition, not from the trial: a full disk, or a
    sqlite store locked by another program for minutes."""
    return says_disk_full(text) or "database is locked" in text


def failed_for_a_passing_reason(experiment_path: str) -> bool:
    """Whether a trial of the local Tune experiment at ``experiment_path`` failed for a passing reason
    (:func:`says_passing`, in its ``error.txt``), or its error files were left empty or cut short (written on a
    full disk; Tune could not even read them back). ``--resume`` then runs the sweep's failed trials again, from
    their last checkpoint."""
    experiment = local_path(experiment_path)
    if experiment is None:
        return False
    for error_file in experiment.glob("*/error.txt"):
        try:
            with error_file.open("rb") as text:
                text.seek(max(0, error_file.stat().st_size - 65536))
                tail = text.read()
        except OSError:
            continue
        if not tail.strip() or says_passing(tail.decode(errors="replace")):
            return True
    return any(not _complete_pickle(pickled) for pickled in experiment.glob("*/error.pkl"))
