"""Downloading the Design-Bench files from the Hugging Face mirror, checked against the manifest
(through ``huggingface_hub``'s cache; only checked files are copied into the data dir)."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, cast

from ignite_mbo.errors import UserError
from ignite_mbo.store_guard import mask
from ignite_mbo.tasks.data import (
    _DOWNLOAD_THREADS,
    _HASH_THREADS,
    DATA_DIR_ENV,
    FOLDERS,
    REPO_ID,
    REVISION,
    FileEntry,
    _check,
    manifest,
    resolve_data_dir,
    sha256_file,
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

    return mask((endpoint or constants.ENDPOINT).rstrip("/"))  # only ever shown: no password in a message


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


DEADLINE_FLOOR_S = 120.0
"""Seconds every file may take whatever its size (connection, redirects, retries)."""
SLOWEST_RATE = 50_000
"""Bytes per second below which a download counts as stuck: a file's deadline is floor + size / this."""


def _within_deadline(entry: FileEntry, endpoint: str | None, root: Path, call: Callable[[], str]) -> str:
    """``call()`` (one file's download) in a daemon thread, refused once its deadline has passed: a server
    that trickles bytes never trips httpx's per-read timeout. The stuck thread cannot block the exit."""
    deadline = DEADLINE_FLOOR_S + entry.bytes / SLOWEST_RATE
    result: list[str] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"download {entry.repo_path}", daemon=True)
    worker.start()
    worker.join(deadline)
    if failure:
        raise failure[0]
    if not result:
        raise UserError(
            f"download of {entry.repo_path} from {_endpoint(endpoint)} did not finish within {deadline:.0f} s "
            f"(the server sends too slowly or stalls); check the network, set HF_ENDPOINT to another mirror, "
            f"or place the files by hand under {root} and run 'ignite-mbo data verify'"
        )
    return result[0]


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
            path = _within_deadline(entry, endpoint, root, lambda: hf_hub_download(
                REPO_ID, entry.repo_path, repo_type="dataset", revision=revision, endpoint=endpoint,
                cache_dir=cache_dir, tqdm_class=cast(Any, progress),
            ))
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
