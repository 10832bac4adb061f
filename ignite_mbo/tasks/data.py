"""Design-Bench data on disk: where it lives, whether it is intact, and how to download it.

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
import shutil
import stat
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, cast

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
    return Path(data_dir).expanduser().absolute()


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


def _kind(path: Path, mode: int) -> str:
    """What ``path`` is when it is not a regular file, e.g. ``a symlink to /dev/zero (a character device)``."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"a symlink to {os.readlink(path)} ({kind})" if path.is_symlink() else kind


def _status_by_size(entry: FileEntry, data_dir: Path) -> tuple[FileStatus, os.stat_result | None]:
    """The status from ``stat`` alone; the stat result comes back when the size is right."""
    path = entry.path(data_dir)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return FileStatus(entry, path, "missing"), None
    except OSError as exc:
        return FileStatus(entry, path, "unreadable", exc.strerror or type(exc).__name__), None
    if not stat.S_ISREG(info.st_mode):
        return FileStatus(entry, path, "wrong kind", _kind(path, info.st_mode)), None
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
        raise UserError(
            f"{label} data missing: {first.path} not found{more}; "
            f"run '{_download_hint([folder])}' or {_LAYOUT_HINT}"
        )
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


# --- download -------------------------------------------------------------------------------


class _FolderProgress:
    """One progress bar per folder that adds up the bytes of every file's transfer.

    ``hf_hub_download`` calls its ``tqdm_class`` once per file and uses the result as a context
    manager with ``update(n)``; this object hands itself out for each file.
    """

    def __init__(self, folder: str, total_bytes: int) -> None:
        from huggingface_hub.utils.tqdm import tqdm

        self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=folder, disable=None)
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Self:
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        with self._lock:
            self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def _endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def _download_error(exc: Exception, entry: FileEntry, revision: str, endpoint: str, root: Path) -> UserError:
    """The one-line UserError for an exception of ``hf_hub_download``: the problem, then the fix."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    by_hand = f"or place the files by hand under {root} and run 'ignite-mbo data verify'"
    if isinstance(exc, RevisionNotFoundError):
        return UserError(
            f"revision {revision!r} of {REPO_ID} not found at {endpoint}; "
            f"pass an existing --revision (the default is {REVISION!r}), {by_hand}"
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return UserError(
            f"{entry.repo_path} not found in {REPO_ID} at revision {revision!r} on {endpoint}; "
            f"pass another --revision, set HF_ENDPOINT to a mirror that has it, {by_hand}"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return UserError(
            f"{REPO_ID} not found at {endpoint}; set HF_ENDPOINT to a mirror of it "
            f"(unset it for huggingface.co), {by_hand}"
        )
    if isinstance(exc, LocalEntryNotFoundError) and constants.is_offline_mode():
        return UserError(
            f"HF_HUB_OFFLINE is set and {entry.repo_path} is not in the Hugging Face cache; "
            f"unset HF_HUB_OFFLINE to download it, {by_hand}"
        )
    cause = exc.__cause__ if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ else exc
    reason = f"{type(cause).__name__}: {str(cause).strip()}".splitlines()[0]
    return UserError(
        f"download of {entry.repo_path} from {endpoint} failed ({reason}); check the network, "
        f"set HF_ENDPOINT to a mirror, {by_hand}"
    )


def _fetch_all(
    entries: Sequence[FileEntry], revision: str, endpoint: str | None, cache_dir: Path | None, root: Path
) -> list[Path]:
    """Download the entries into the Hugging Face cache; their paths there.

    huggingface_hub retries failed requests, answers from its cache when it holds the file, and
    honours HF_HUB_OFFLINE and HF_ENDPOINT. The first file goes alone, so that a dead endpoint,
    offline mode or a bad revision fails once; the rest go 4 at a time.
    """
    import httpx2
    from huggingface_hub import hf_hub_download

    progress = _FolderProgress(entries[0].folder, sum(e.bytes for e in entries))

    def fetch(entry: FileEntry) -> Path:
        try:
            path = hf_hub_download(
                REPO_ID, entry.repo_path, repo_type="dataset", revision=revision, endpoint=endpoint,
                cache_dir=cache_dir, tqdm_class=cast(Any, progress),
            )
        # RuntimeError: a thread whose connection failed closed huggingface_hub's shared client
        except (OSError, ValueError, RuntimeError, httpx2.HTTPError) as exc:
            raise _download_error(exc, entry, revision, _endpoint(endpoint), root) from None
        return Path(path)

    pool = ThreadPoolExecutor(_DOWNLOAD_THREADS)
    from ignite_mbo.retries import retries_shown  # each retry, as it happens

    with retries_shown():
        try:
            first = fetch(entries[0])
            return [first, *pool.map(fetch, entries[1:])]
        finally:
            pool.shutdown(cancel_futures=True)  # after a failure, start no further file
            progress.close()


def _evict(cached: Path) -> None:
    """Remove a file and the blob it links to from the Hugging Face cache, so it is fetched anew."""
    blob = cached.resolve()
    cached.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _check_cached(entries: Sequence[FileEntry], cached: Sequence[Path], endpoint: str, root: Path) -> None:
    """Check every downloaded file against the manifest; evict the bad ones and raise on any."""

    def problem(entry: FileEntry, path: Path) -> str | None:
        size = path.stat().st_size
        if size != entry.bytes:
            return f"wrong size: {size} bytes, the manifest says {entry.bytes}"
        return None if sha256_file(path) == entry.sha256 else "sha256 mismatch"

    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        problems = list(pool.map(problem, entries, cached))
    bad = [(e, p, why) for e, p, why in zip(entries, cached, problems, strict=True) if why is not None]
    for _, path, _ in bad:
        _evict(path)
    if bad:
        entry, _, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(
            f"{endpoint} served a corrupt {entry.repo_path} ({why}){more}; nothing was written and "
            f"the bad copies left the Hugging Face cache: try again, set HF_ENDPOINT to another mirror, "
            f"or place the files by hand under {root} and run 'ignite-mbo data verify'"
        )


def _copy_into_place(source: Path, target: Path) -> None:
    """Copy to a hidden temp file next to target, then rename it over target (atomic)."""
    temp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        shutil.copyfile(source, temp)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _outermost_missing(path: Path) -> Path | None:
    """The outermost folder on the way to ``path`` that does not exist yet (None if path exists)."""
    missing = [p for p in (path, *path.parents) if not os.path.exists(p)]  # False on any OSError
    return missing[-1] if missing else None


def _place(entries: Sequence[FileEntry], cached: Sequence[Path], root: Path) -> list[Path]:
    """Copy checked files from the cache into the data dir; on failure remove the folders made here."""
    made = _outermost_missing(root / entries[0].folder)
    try:
        for entry, source in zip(entries, cached, strict=True):
            entry.path(root).parent.mkdir(parents=True, exist_ok=True)
            _copy_into_place(source, entry.path(root))
    except BaseException as exc:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        if isinstance(exc, OSError):
            raise UserError(
                f"cannot write {exc.filename or root} ({exc.strerror or exc}); pass --data-dir or set "
                f"{DATA_DIR_ENV} to a writable folder with 350 MB free"
            ) from None
        raise
    return [e.path(root) for e in entries]


def _require_writable(root: Path) -> None:
    """Refuse, before any download, a data dir that is a file or sits in a folder we cannot write."""
    existing = next(p for p in (root, *root.parents) if os.path.exists(p))  # False on any OSError
    if not existing.is_dir():
        raise UserError(f"the data dir {root} is not a folder ({existing} is a file); pass another --data-dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {existing}; pass --data-dir or set {DATA_DIR_ENV} to a writable folder")


def download(
    folders: Sequence[str] = FOLDERS,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    revision: str = REVISION,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Download every manifest file of the folders that is not already intact; the paths written.

    Per folder: fetch the files into the Hugging Face cache (``cache_dir``, default $HF_HUB_CACHE),
    check each against the manifest, and only when all pass copy them into the data dir, each
    through a temp file renamed into place. A failure writes nothing to the data dir and removes
    a folder this call created. ``endpoint`` defaults to $HF_ENDPOINT, else huggingface.co.
    """
    root = resolve_data_dir(data_dir)
    _require_writable(root)
    cache = Path(cache_dir) if cache_dir is not None else None
    written: list[Path] = []
    for folder in folders:
        statuses = _check(manifest(folder), root, check_sha256=True)
        todo = [s.entry for s in statuses if not s.ok]
        if not todo:
            print(f"{folder}: all {len(statuses)} files already present", file=sys.stderr)
            continue
        megabytes = sum(e.bytes for e in todo) / 1e6
        print(
            f"{folder}: downloading {len(todo)} of {len(statuses)} files ({megabytes:.1f} MB) "
            f"from {_endpoint(endpoint)} ({REPO_ID}, revision {revision})",
            file=sys.stderr,
        )
        cached = _fetch_all(todo, revision, endpoint, cache, root)
        _check_cached(todo, cached, _endpoint(endpoint), root)
        written += _place(todo, cached, root)
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


def _count(problems: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem] = counts.get(problem, 0) + 1
    return ", ".join(f"{n} {problem}" for problem, n in counts.items())


def check_data_dir(root: Path, folders: Sequence[str]) -> int:
    """Print one line per problem of the folders (missing, wrong size, corrupt, unreadable,
    unexpected file); raise a one-line UserError summing them up, or print one ok line per folder."""
    bad = [s for s in verify(root, folders) if not s.ok]
    strays = unexpected_files(root, folders)
    if not bad and not strays:
        for folder in folders:
            print(f"{folder}: ok ({len(manifest(folder))} files)")
        return 0
    for status in bad:
        print(f"{status.path}: {status.problem}")
    for path in strays:
        print(f"{path}: unexpected (not in the manifest; loaders ignore it)")
    fixes = []
    if any(s.state != "unreadable" for s in bad):
        fixes.append(f"run '{_download_hint(s.entry.folder for s in bad)}' to replace missing and damaged files")
    if any(s.state == "unreadable" for s in bad):
        fixes.append("make the unreadable files readable by this user")
    if strays:
        fixes.append("delete the unexpected files")
    total = len(bad) + len(strays)
    counts = _count([s.state for s in bad] + ["unexpected"] * len(strays))
    noun = "problem" if total == 1 else "problems"
    raise UserError(f"{total} {noun} under {root} ({counts}); {', '.join(fixes)}")


def data_command(
    action: str,
    folders: Sequence[str],
    data_dir: str | os.PathLike[str] | None,
    revision: str = REVISION,
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
        download(chosen, root, revision=revision)
    return check_data_dir(root, chosen)
