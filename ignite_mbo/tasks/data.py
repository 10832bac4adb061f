"""Design-Bench data on disk: where it lives, whether it is intact, and how to download it.

The files keep the original Design-Bench layout under one data dir::

    DATA/tf_bind_8-SIX6_REF_R1/tf_bind_8-{x,y}-0.npy
    DATA/tf_bind_10-pho4/tf_bind_10-{x,y}-{0..83}.npy

Every file's size and sha256 is pinned in the package manifest ``design_bench_files.csv``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from ignite_mbo.errors import UserError

DATA_DIR_ENV = "IGNITE_MBO_DATA_DIR"
MIRROR_URL = "https://huggingface.co/datasets/beckhamc/design_bench_data/resolve/main"
FOLDERS = ("tf_bind_8-SIX6_REF_R1", "tf_bind_10-pho4")
TASK_FOLDERS = {"tf_bind_8": "tf_bind_8-SIX6_REF_R1", "tf_bind_10": "tf_bind_10-pho4"}
LABELS = {"tf_bind_8-SIX6_REF_R1": "TF-Bind-8", "tf_bind_10-pho4": "TF-Bind-10"}

_MANIFEST = Path(__file__).with_name("design_bench_files.csv")
_BLOCK = 1 << 20  # read and hash in 1 MiB blocks
_HASH_THREADS = min(8, os.cpu_count() or 1)
_LAYOUT_HINT = f"set {DATA_DIR_ENV} to a folder with the Design-Bench layout"

State = Literal["ok", "missing", "wrong size", "sha256 mismatch"]


@dataclass(frozen=True)
class FileEntry:
    """One file of the manifest: where it goes, its size in bytes and its sha256."""

    folder: str
    file: str
    bytes: int
    sha256: str

    def path(self, data_dir: Path) -> Path:
        return data_dir / self.folder / self.file


@dataclass(frozen=True)
class FileStatus:
    """The result of checking one manifest file on disk."""

    entry: FileEntry
    path: Path
    state: State

    @property
    def ok(self) -> bool:
        return self.state == "ok"


# --- where the data lives -------------------------------------------------------------------


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data dir: the argument, else $IGNITE_MBO_DATA_DIR, else the user cache dir."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        return Path(platformdirs.user_cache_dir("ignite-mbo")) / "design_bench"
    return Path(data_dir).expanduser().absolute()


@functools.cache
def _all_entries() -> tuple[FileEntry, ...]:
    with open(_MANIFEST, newline="") as f:
        return tuple(
            FileEntry(row["folder"], row["file"], int(row["bytes"]), row["sha256"])
            for row in csv.DictReader(f)
        )


def manifest(folder: str) -> list[FileEntry]:
    """The pinned files of one Design-Bench folder (one of FOLDERS)."""
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


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _check(entries: Sequence[FileEntry], data_dir: Path, check_sha256: bool) -> list[FileStatus]:
    """Check existence and size of every entry, then (in a thread pool) the sha256 of the rest."""

    def by_size(entry: FileEntry) -> State:
        path = entry.path(data_dir)
        if not path.is_file():
            return "missing"
        return "ok" if path.stat().st_size == entry.bytes else "wrong size"

    def by_hash(entry: FileEntry) -> State:
        return "ok" if sha256_file(entry.path(data_dir)) == entry.sha256 else "sha256 mismatch"

    states = [by_size(e) for e in entries]
    if check_sha256:
        to_hash = [i for i, s in enumerate(states) if s == "ok"]
        with ThreadPoolExecutor(_HASH_THREADS) as pool:  # hashlib releases the GIL
            for i, state in zip(to_hash, pool.map(by_hash, [entries[i] for i in to_hash])):
                states[i] = state
    return [FileStatus(e, e.path(data_dir), s) for e, s in zip(entries, states)]


def verify(
    data_dir: str | os.PathLike[str] | None = None, folders: Sequence[str] = FOLDERS
) -> list[FileStatus]:
    """The status (ok / missing / wrong size / sha256 mismatch) of every file of the folders."""
    root = resolve_data_dir(data_dir)
    return _check([e for f in folders for e in manifest(f)], root, check_sha256=True)


def require(
    folder: str, data_dir: str | os.PathLike[str] | None = None, check_sha256: bool = True
) -> Path:
    """The folder's path if all its files are present and intact, else a one-line UserError."""
    root = resolve_data_dir(data_dir)
    bad = [s for s in _check(manifest(folder), root, check_sha256) if not s.ok]
    if not bad:
        return root / folder
    first, label = bad[0], LABELS.get(folder, folder)
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    if first.state == "missing":
        raise UserError(
            f"{label} data missing: {first.path} not found{more}; "
            f"run '{_download_hint([folder])}' or {_LAYOUT_HINT}"
        )
    raise UserError(
        f"{label} data corrupt: {first.path} is corrupt ({first.state}){more}; "
        f"delete it and run '{_download_hint([folder])}'"
    )


# --- download -------------------------------------------------------------------------------


def _fetch(url: str, entry: FileEntry, target: Path, timeout: float) -> None:
    """Stream url to a temp file next to target, check it, then atomically move it into place."""
    fix = (
        f"check the network, pass another mirror with --mirror, or place the files by hand "
        f"under {target.parent.parent} and run 'ignite-mbo data verify'"
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{entry.file}.", suffix=".part")
    except OSError as exc:
        raise UserError(
            f"cannot write to {target.parent} ({exc.strerror}); "
            f"set {DATA_DIR_ENV} to a writable folder"
        ) from exc
    tmp = Path(tmp_name)
    try:
        h, size = hashlib.sha256(), 0
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "ignite-mbo"})
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as r:
                while block := r.read(_BLOCK):
                    size += len(block)
                    if size > entry.bytes:
                        break
                    h.update(block)
                    out.write(block)
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code} {exc.reason}"
            raise UserError(f"download of {url} failed ({problem}); {fix}") from exc
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            problem = f"{type(exc).__name__}: {reason}".replace("\n", " ")
            raise UserError(f"download of {url} failed ({problem}); {fix}") from exc
        if size < entry.bytes:
            problem = f"cut short at {size} of {entry.bytes} bytes"
            raise UserError(f"download of {url} is incomplete ({problem}); {fix}")
        if size > entry.bytes:
            problem = f"more than the expected {entry.bytes} bytes"
            raise UserError(f"download of {url} is corrupt ({problem}); {fix}")
        if h.hexdigest() != entry.sha256:
            raise UserError(f"download of {url} is corrupt (sha256 mismatch); {fix}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def download(
    folders: Sequence[str] = FOLDERS,
    data_dir: str | os.PathLike[str] | None = None,
    base_url: str = MIRROR_URL,
    timeout: float = 60,
    entries: Sequence[FileEntry] | None = None,
) -> list[Path]:
    """Download every manifest file of the folders (or just `entries`) that is not already intact.

    Each file is streamed to a temp file, checked (size and sha256) and moved into place
    atomically, so a failure leaves nothing half-written. Returns the paths written.
    """
    root = resolve_data_dir(data_dir)
    base = base_url.rstrip("/")
    wanted = list(entries) if entries is not None else [e for f in folders for e in manifest(f)]
    written: list[Path] = []
    for folder in dict.fromkeys(e.folder for e in wanted):
        statuses = _check([e for e in wanted if e.folder == folder], root, check_sha256=True)
        todo = [s for s in statuses if not s.ok]
        if todo:
            line = f"{folder}: downloading {len(todo)} of {len(statuses)} files from {base}"
        else:
            line = f"{folder}: all {len(statuses)} files already present"
        print(line, file=sys.stderr)
        for status in todo:
            _fetch(f"{base}/{folder}/{status.entry.file}", status.entry, status.path, timeout)
            written.append(status.path)
    return written


# --- CLI ------------------------------------------------------------------------------------


def _expand(names: Sequence[str]) -> list[str]:
    """Folder names from a mix of folder names, task keys (tf_bind_8) and 'all'."""
    folders: list[str] = []
    for name in names or ["all"]:
        if name == "all":
            folders.extend(FOLDERS)
        elif name in TASK_FOLDERS:
            folders.append(TASK_FOLDERS[name])
        elif name in FOLDERS:
            folders.append(name)
        else:
            choices = ", ".join([*TASK_FOLDERS, "all"])
            raise UserError(f"unknown Design-Bench task {name!r}; use --task with one of {choices}")
    return list(dict.fromkeys(folders))


def _summarize(folder: str, statuses: Sequence[FileStatus]) -> str:
    mine = [s for s in statuses if s.entry.folder == folder]
    missing = sum(s.state == "missing" for s in mine)
    corrupt = len(mine) - missing - sum(s.ok for s in mine)
    if not missing and not corrupt:
        return f"{folder}: ok ({len(mine)} files)"
    parts = [f"{missing} missing" if missing else "", f"{corrupt} corrupt" if corrupt else ""]
    return f"{folder}: {', '.join(p for p in parts if p)}"


def data_command(
    action: str,
    folders: Sequence[str],
    data_dir: str | os.PathLike[str] | None,
    mirror: str = MIRROR_URL,
) -> int:
    """`ignite-mbo data path|verify|download`: returns 0, or raises UserError naming the fix."""
    root = resolve_data_dir(data_dir)
    if action == "path":
        print(root)
        return 0
    if action not in ("verify", "download"):
        raise UserError(f"unknown data action {action!r}; use one of path, verify, download")
    chosen = _expand(folders)
    if action == "download":
        download(chosen, root, base_url=mirror)
    statuses = verify(root, chosen)
    lines = [_summarize(f, statuses) for f in chosen]
    print("\n".join(lines))
    bad = [f for f in chosen if any(s.entry.folder == f and not s.ok for s in statuses)]
    if bad:
        summary = "; ".join(_summarize(f, statuses) for f in bad)
        raise UserError(
            f"Design-Bench data under {root} is incomplete ({summary}); "
            f"run '{_download_hint(bad)}' or {_LAYOUT_HINT}"
        )
    return 0
