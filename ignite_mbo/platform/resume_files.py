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
from pathlib import Path

from ignite_mbo.errors import UserError

MAX_ENTRIES = 1_000_000
"""Entries walked at most (a real experiment holds a few per trial)."""


def _local(path: str) -> Path | None:
    """``path`` as a local path, or None for remote storage (``s3://``, ``gs://``...)."""
    if path.startswith("file://"):
        return Path(path.removeprefix("file://"))
    return None if "://" in path else Path(path)


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def check_state_files(experiment_path: str, sweep_dir: Path, storage_path: str | None) -> None:
    """Refuse an entry under the local ``experiment_path`` (Tune's state files and folders) that is a
    link resolving outside ``sweep_dir``, the experiment folder or ``storage_path``; one-line UserError."""
    experiment = _local(experiment_path)
    if experiment is None or not experiment.exists():
        return
    roots = [sweep_dir.resolve(), experiment.resolve()]
    storage = _local(storage_path) if storage_path else None
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
            if not entry.is_symlink() and entry.is_file() and entry.lstat().st_nlink > 1:
                raise UserError(f"{entry} is a hard link ({entry.lstat().st_nlink} names), so its contents may "
                                "live outside the sweep folder; --resume unpickles only Tune state written there: "
                                "replace it with a copy, or run the sweep again without --resume")


def check_saved_state(experiment_path: str) -> None:
    """A local Tune experiment with a ``tuner.pkl`` must hold a readable ``experiment_state-*.json`` (its trials):
    without one, Tune would restore no trial and the sweep would start over under ``--resume``. One-line error."""
    experiment = _local(experiment_path)
    if experiment is None or not (experiment / "tuner.pkl").exists():
        return
    states = sorted(experiment.glob("experiment_state-*.json"))
    try:
        trials = json.loads(states[-1].read_bytes())["trial_data"] if states else None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        trials = None
    if not isinstance(trials, list):
        raise UserError(f"{experiment} lacks a readable experiment_state-*.json, Tune's record of the sweep's trials "
                        "(deleted, truncated, or written on a full disk); run the sweep again without --resume")
