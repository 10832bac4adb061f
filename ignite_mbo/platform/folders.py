"""The sweep's folders, made before the tracking store is touched, the sweep folder claimed atomically.

Two sweeps of one space started at once in one ``--output-dir`` must never share a folder (one
would overwrite the other's results table and report). A folder is claimed by the exclusive
create of a marker file (``.claimed``) in it while it is empty, which only one process can win.
The storage path (Tune's experiments) is created and test-written at the same moment, so a path
that cannot be created fails before ``mlflow.db``, ``mlartifacts/`` or an MLflow run exist.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ignite_mbo.atomic import new_folders
from ignite_mbo.errors import UserError, first_line
from ignite_mbo.platform.checks import within
from ignite_mbo.platform.resume_files import local_path
from ignite_mbo.store_guard import mask

CLAIM_MARKER = ".claimed"
MAX_FOLDERS = 999
ROOM_BYTES = 1 << 20
"""Free space the sweep folder and the storage path must have before the store is touched (a full disk fails
there, not after)."""


def _claim(path: Path) -> bool:
    """Whether this process now owns ``path``: the one that creates its marker file (an exclusive
    create) in it while it holds nothing else."""
    if path.exists() and not path.is_dir():
        return False
    path.mkdir(exist_ok=True)
    if any(entry.name != CLAIM_MARKER for entry in path.iterdir()):
        return False  # an earlier sweep's folder
    try:
        os.close(os.open(path / CLAIM_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def claim_sweep_folder(output_dir: Path, name: str) -> Path:
    """Create and own the first free one of ``OUTPUT_DIR/name``, ``name-2``, ...; a one-line error if the
    output folder cannot be made."""
    try:
        with new_folders(output_dir):  # pass 26: out of inodes, the parents made were left behind
            for number in range(1, MAX_FOLDERS + 1):
                path = output_dir / (name if number == 1 else f"{name}-{number}")
                if _claim(path):
                    _check_room(path)
                    return path
    except OSError as error:
        raise UserError(f"cannot create the sweep folder in {output_dir} ({error.strerror or error}); "
                        "pick another --output-dir") from None
    raise UserError(f"{output_dir} holds {MAX_FOLDERS} sweeps of {name!r}; pick another --output-dir")


def _write_probe(folder: Path) -> None:
    """Write ``ROOM_BYTES`` to disk in ``folder`` and drop them; OSError when it cannot (a full disk)."""
    with tempfile.TemporaryFile(dir=folder) as probe:
        probe.write(bytes(ROOM_BYTES))
        probe.flush()
        os.fsync(probe.fileno())


def _check_room(path: Path) -> None:
    """:func:`_write_probe` in a just-claimed folder; on failure the claim is given back."""
    try:
        _write_probe(path)
    except OSError as error:
        release_claim(path)
        raise UserError(f"cannot write in {path} ({error.strerror or error}); free space there or pick another "
                        "--output-dir") from None


def check_room_to_resume(sweep_dir: Path, experiment_path: str) -> None:
    """``--resume`` writes in the sweep folder and in Tune's experiment folder (under ``--storage-path``): a disk
    with no room there is a one-line error before anything runs. Else every trial would run into the full disk,
    and Tune's state, written in place, would be cut short, so the sweep could not be resumed any more."""
    experiment = local_path(experiment_path)  # remote storage: Tune's own errors
    for folder in (sweep_dir, *([experiment] if experiment else [])):
        try:
            if not folder.is_dir():
                continue  # a missing state is refused with its own line
            _write_probe(folder)
        except OSError as error:
            raise UserError(f"cannot write in {folder} ({error.strerror or error}), where the sweep keeps its "
                            "results and Tune's state; free space there, then run the same command again") from None


@contextmanager
def held(path: Path) -> Iterator[None]:
    """While active, this process alone runs the sweep in ``path`` (an advisory lock on its marker file): a
    second ``--resume`` of it, started meanwhile, is refused in one line instead of running every trial again."""
    descriptor = os.open(path / CLAIM_MARKER, os.O_CREAT | os.O_RDWR)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another ignite-mbo process is running the sweep in {path}; let it finish, or stop it "
                            "and then run --resume") from None
        yield
    finally:
        os.close(descriptor)  # releases the lock


def release_claim(path: Path) -> bool:
    """Give back a claimed sweep folder that holds nothing but its marker (a sweep stopped or failed while
    starting), so the next sweep of the space takes it again; whether it was given back."""
    try:
        if all(entry.name == CLAIM_MARKER for entry in path.iterdir()):
            (path / CLAIM_MARKER).unlink(missing_ok=True)
            path.rmdir()
            return True
    except OSError:
        pass  # another sweep's files, or already gone: left as they are
    return False


def prepare_storage(storage_path: str) -> None:
    """Create a local storage path and check that a file can be written in it; a URI must answer a read."""
    if "://" in storage_path and not storage_path.startswith("file://"):
        check_remote_storage(storage_path)
        return
    folder = Path(storage_path.removeprefix("file://"))
    try:
        with new_folders(folder):
            _write_probe(folder)
    except OSError as error:
        raise UserError(f"cannot create or write {folder}, where Tune keeps the sweep's state (--storage-path, "
                        f"by default the --output-dir): {error.strerror or error}; pick another folder") from None


def check_remote_storage(uri: str, timeout_s: float = 20.0) -> None:
    """``uri`` (``s3://``, ``gs://``...) answers a read of its path through pyarrow, as Tune will use it, within
    ``timeout_s``; else a one-line error before the store or the sweep folder is touched."""
    def read() -> None:
        import pyarrow.fs

        filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
        filesystem.get_file_info(path)

    try:
        within(read, timeout_s)
    except Exception as error:  # noqa: BLE001 - pyarrow raises anything for a URI it cannot use
        raise UserError(f"cannot reach --storage-path {mask(uri)} ({first_line(error)}); check its credentials "
                        "(e.g. AWS_ACCESS_KEY_ID) and endpoint, or pass a local folder") from None
