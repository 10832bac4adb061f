"""Checks of user input that run before anything is started or written (Ray, MLflow runs, files)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ignite_mbo.errors import UserError

STORAGE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "file")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(device: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and only what this torch build and machine have."""
    import torch

    if not _DEVICE.match(device):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise UserError(f"--device {device}: {build}; use --device cpu (or auto)")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible; use cuda:0..")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: this machine and torch build have no MPS; use --device cpu (or auto)")
    return device


def writable_ancestor(path: Path) -> Path:
    """The nearest existing folder at or above ``path``; a one-line error if it is not a writable folder."""
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{probe} is a file, so {path} cannot be a folder; pick another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{probe} is not writable, so {path} cannot be created; pick a path you can write")
    return probe


def check_output_dir(path: Path) -> Path:
    """The output folder, absolute: a folder or creatable, writable."""
    path = path.absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"--output-dir {path} is a file; pass a folder")
    writable_ancestor(path)
    return path


def check_storage_path(storage: str) -> str:
    """Tune's storage path: a local folder (created later) or a URI with a scheme pyarrow knows."""
    scheme, sep, rest = storage.partition("://")
    if sep:
        if scheme not in STORAGE_SCHEMES or not rest.strip("/"):
            raise UserError(f"--storage-path {storage!r}: unsupported; use a folder, or "
                            f"{', '.join(f'{s}://' for s in STORAGE_SCHEMES)} with a path")
        if scheme == "file":
            writable_ancestor(Path("/" + rest.lstrip("/")))
        return storage
    writable_ancestor(Path(storage))
    return str(Path(storage).absolute())


def check_name(name: str) -> str:
    """An experiment or folder name: no ``.``/``..`` and no path separators."""
    if name in (".", "..") or "/" in name or "\\" in name or not name.strip():
        raise UserError(f"name {name!r} is not usable as a folder name; use letters, digits, '_', '-' and '.'")
    return name


def check_local_resources(cpu: float, gpu: float, num_cpus: int | None) -> None:
    """A local Ray must be able to hold one trial's resources, else the sweep would wait forever."""
    if num_cpus is not None and num_cpus < 1:
        raise UserError(f"--num-cpus must be at least 1 (got {num_cpus})")
    available = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
    if cpu > available:
        raise UserError(f"resources.cpu={cpu:g} per trial, but this machine's Ray has {available} CPU(s); "
                        f"lower resources.cpu or raise --num-cpus")
