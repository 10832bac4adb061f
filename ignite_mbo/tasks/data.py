"""Design-Bench data on disk: where it lives and whether it is intact (:mod:`download` fetches it).

The files keep the original Design-Bench layout under one data dir::

    DATA/tf_bind_8-SIX6_REF_R1/tf_bind_8-{x,y}-0.npy
    DATA/tf_bind_10-pho4/tf_bind_10-{x,y}-{0..83}.npy

The package manifest ``design_bench_files.csv`` decides what is data: it pins every file's name,
size and sha256. Loaders read exactly the files it lists, in its order; ``verify`` also reports
every file in the two folders that it does not list. Downloads go through ``huggingface_hub``
into its cache, are checked against the manifest, and only then copied into the data dir.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from ignite_mbo.errors import UserError

DATA_DIR_ENV = "IGNITE_MBO_DATA_DIR"
REPO_ID = "beckhamc/design_bench_data"
"""The Hugging Face dataset that mirrors Design-Bench's bucket, with the same file layout."""
REVISION = "main"
"""The revision of REPO_ID that ``download`` fetches unless told otherwise (``--revision``).

A branch, not a commit sha: the Hub could not be reached when this was written, so its commit
could not be looked up. The sha256 manifest guards the content whatever the revision serves.
Replace it with the commit sha once known, to pin the download itself.
"""
FOLDERS = ("tf_bind_8-SIX6_REF_R1", "tf_bind_10-pho4")
TASK_FOLDERS = {"tf_bind_8": "tf_bind_8-SIX6_REF_R1", "tf_bind_10": "tf_bind_10-pho4"}
LABELS = {"tf_bind_8-SIX6_REF_R1": "TF-Bind-8", "tf_bind_10-pho4": "TF-Bind-10"}

_MANIFEST = Path(__file__).with_name("design_bench_files.csv")
_BLOCK = 1 << 20  # read and hash in 1 MiB blocks
_HASH_THREADS = min(8, os.cpu_count() or 1)
_DOWNLOAD_THREADS = 4
_LAYOUT_HINT = f"set {DATA_DIR_ENV} to a folder with the Design-Bench layout"

State = Literal["ok", "missing", "wrong kind", "wrong size", "sha256 mismatch", "unreadable"]


@dataclass(frozen=True)
class FileEntry:
    """One file of the manifest: where it goes, its size in bytes and its sha256."""

    folder: str
    file: str
    bytes: int
    sha256: str

    def path(self, data_dir: Path) -> Path:
        return data_dir / self.folder / self.file

    @property
    def repo_path(self) -> str:
        """The file's path in the mirror (REPO_ID), the same as under the data dir."""
        return f"{self.folder}/{self.file}"


@dataclass(frozen=True)
class FileStatus:
    """The result of checking one manifest file on disk; ``detail`` says more about a bad state."""

    entry: FileEntry
    path: Path
    state: State
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def problem(self) -> str:
        """The state and its detail, e.g. ``wrong size (12 bytes, the manifest says 263296)``."""
        return f"{self.state} ({self.detail})" if self.detail else self.state


# --- where the data lives -------------------------------------------------------------------


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data dir: the argument, else $IGNITE_MBO_DATA_DIR, else the user cache dir."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        return Path(platformdirs.user_cache_dir("ignite-mbo")) / "design_bench"
    root = Path(data_dir).expanduser().absolute()
    existing = next((p for p in (root, *root.parents) if os.path.exists(p)), None)  # False on any OSError
    if existing is not None and not existing.is_dir():
        kind = "a file" if existing.is_file() else file_kind(existing)
        raise UserError(f"the data dir {root} is not a folder ({existing} is {kind}); pass another "
                        f"--data-dir or set {DATA_DIR_ENV} to a folder")
    return root


@functools.cache
def _all_entries() -> tuple[FileEntry, ...]:
    with open(_MANIFEST, newline="") as f:
        return tuple(
            FileEntry(row["folder"], row["file"], int(row["bytes"]), row["sha256"])
            for row in csv.DictReader(f)
        )


def manifest(folder: str) -> list[FileEntry]:
    """The pinned files of one Design-Bench folder (one of FOLDERS), in manifest order."""
    entries = [e for e in _all_entries() if e.folder == folder]
    if not entries:
        raise UserError(f"unknown Design-Bench folder {folder!r}; use one of {', '.join(FOLDERS)}")
    return entries


def task_key(folder: str) -> str:
    """The CLI's --task name of a folder (tf_bind_8 / tf_bind_10)."""
    return next((k for k, v in TASK_FOLDERS.items() if v == folder), folder)


def _download_hint(folders: Iterable[str]) -> str:
    keys = sorted({task_key(f) for f in folders})
    task = keys[0] if len(keys) == 1 else "all"
    return f"ignite-mbo data download --task {task}"


# --- integrity ------------------------------------------------------------------------------

_SHA256_SEEN: dict[tuple[str, int, int, int], str] = {}
"""sha256 of every file hashed in this process, by (path, size, mtime in ns, inode)."""


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _sha256_once(path: Path, info: os.stat_result) -> str:
    """``sha256_file(path)``, computed at most once per process while size, mtime and inode stay."""
    key = (str(path), info.st_size, info.st_mtime_ns, info.st_ino)
    if key not in _SHA256_SEEN:
        _SHA256_SEEN[key] = sha256_file(path)
    return _SHA256_SEEN[key]


def file_kind(path: Path, mode: int | None = None) -> str:
    """What ``path`` (of ``stat`` mode ``mode``, else its own) is when it is not a regular file, e.g.
    ``a symlink to /dev/zero (a character device)``."""
    mode = path.stat().st_mode if mode is None and path.exists() else (mode or 0)
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"a symlink to {os.readlink(path)} ({kind})" if path.is_symlink() else kind


def _status_by_size(entry: FileEntry, data_dir: Path) -> tuple[FileStatus, os.stat_result | None]:
    """The status from ``stat`` alone; the stat result comes back when the size is right."""
    path = entry.path(data_dir)
    try:
        info = path.stat()
    except FileNotFoundError:
        return FileStatus(entry, path, "missing"), None
    except NotADirectoryError:  # pass 18: a file where the task's folder should be
        blocking = next((folder for folder in reversed(path.parents) if folder.is_relative_to(data_dir)
                         and os.path.lexists(folder) and not folder.is_dir()), None)  # gone since: plain missing
        kind = "a file" if blocking is None or blocking.is_file() else file_kind(blocking)
        return FileStatus(entry, path, "missing", f"{blocking} is {kind}, not a folder" if blocking else ""), None
    except OSError as exc:
        return FileStatus(entry, path, "unreadable", exc.strerror or type(exc).__name__), None
    if not stat.S_ISREG(info.st_mode):
        return FileStatus(entry, path, "wrong kind", file_kind(path, info.st_mode)), None
    if info.st_size != entry.bytes:
        detail = f"{info.st_size} bytes, the manifest says {entry.bytes}"
        return FileStatus(entry, path, "wrong size", detail), None
    return FileStatus(entry, path, "ok"), info


def _status_by_hash(status: FileStatus, info: os.stat_result) -> FileStatus:
    try:
        digest = _sha256_once(status.path, info)
    except OSError as exc:
        return FileStatus(status.entry, status.path, "unreadable", exc.strerror or type(exc).__name__)
    return status if digest == status.entry.sha256 else FileStatus(status.entry, status.path, "sha256 mismatch")


def _status(entry: FileEntry, data_dir: Path, check_sha256: bool) -> FileStatus:
    status, info = _status_by_size(entry, data_dir)
    return _status_by_hash(status, info) if check_sha256 and info is not None else status


def _check(entries: Sequence[FileEntry], data_dir: Path, check_sha256: bool) -> list[FileStatus]:
    """The status of every entry: existence and size, then the sha256 of those of the right size."""
    with ThreadPoolExecutor(_HASH_THREADS) as pool:  # hashlib releases the GIL
        return list(pool.map(lambda entry: _status(entry, data_dir, check_sha256), entries))


def verify(
    data_dir: str | os.PathLike[str] | None = None, folders: Sequence[str] = FOLDERS
) -> list[FileStatus]:
    """The status of every manifest file of the folders (size and sha256), in manifest order."""
    root = resolve_data_dir(data_dir)
    return _check([e for f in folders for e in manifest(f)], root, check_sha256=True)


def unexpected_files(
    data_dir: str | os.PathLike[str] | None = None, folders: Sequence[str] = FOLDERS
) -> list[Path]:
    """Every entry of the folders that the manifest does not list (loaders ignore them).

    A folder that is absent or cannot be listed adds nothing: its manifest files report it.
    """
    root = resolve_data_dir(data_dir)
    found: list[Path] = []
    for folder in folders:
        listed = {e.file for e in manifest(folder)}
        try:
            names = sorted(os.listdir(root / folder))
        except OSError:
            continue
        found.extend(root / folder / name for name in names if name not in listed)
    return found


def require(
    folder: str, data_dir: str | os.PathLike[str] | None = None, check_sha256: bool = True
) -> Path:
    """The folder's path if every manifest file is present and intact, else a one-line UserError.

    Each file's sha256 is computed at most once per process (see ``_sha256_once``), so building
    a task again in the same process costs a ``stat`` per file.
    """
    root = resolve_data_dir(data_dir)
    bad = [s for s in _check(manifest(folder), root, check_sha256) if not s.ok]
    if not bad:
        return root / folder
    first, label = bad[0], LABELS.get(folder, folder)
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    if first.state == "missing":
        where = f"{first.detail}; remove it and" if first.detail else f"{first.path} not found{more};"
        raise UserError(f"{label} data missing: {where} run '{_download_hint([folder])}' or {_LAYOUT_HINT}")
    if first.state == "wrong kind":
        raise UserError(
            f"{label} data wrong: {first.path} is {first.detail}, not a regular file{more}; "
            f"remove it and run '{_download_hint([folder])}' or {_LAYOUT_HINT}"
        )
    if first.state == "unreadable":
        raise UserError(
            f"{label} data unreadable: {first.path} ({first.detail}){more}; "
            f"make the folder readable by this user or {_LAYOUT_HINT}"
        )
    raise UserError(
        f"{label} data corrupt: {first.path} is corrupt ({first.problem}){more}; "
        f"delete it and run '{_download_hint([folder])}'"
    )
