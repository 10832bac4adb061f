"""``sweep.json``: what a sweep folder records about its sweep, as a typed model."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ignite_mbo.atomic import atomic_write
from ignite_mbo.errors import UserError
from ignite_mbo.store_guard import without_credentials

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.parquet"
MAX_RECORD_BYTES = 64 << 20
"""Far above any record's size (its space is at most 1 MiB of YAML): a larger one is not a sweep's."""


class SweepRecord(BaseModel):
    """The sweep a folder holds: its space, MLflow store and parent run, and where Tune keeps its state."""

    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any]
    """The validated search space (``SweepSpec`` as JSON), after ``--override``."""
    tracking_uri: str
    """Written without its ``user:password@`` (``sweep.json`` is readable by all); ``--resume`` takes the
    credentials from ``--tracking-uri`` or MLflow's environment variables."""
    experiment: str
    """The MLflow experiment: the space's name."""
    parent_run_id: str
    storage_path: str
    """Tune's ``storage_path``: the sweep folder's parent unless ``--storage-path`` moved it."""
    experiment_path: str
    """Tune's experiment folder (``storage_path/<folder name>``), restored by ``--resume``."""

    @classmethod
    def load(cls, folder: Path) -> SweepRecord:
        """The record in ``folder``; a missing, corrupt or foreign file is a one-line UserError."""
        path = folder / SWEEP_FILE
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would hang the read, /dev/zero fill the memory
                raise UserError(f"{path} is not a regular file (a device, a pipe or a folder in its place); restore "
                                "the sweep's record there, or run the sweep again into a new --output-dir")
            with path.open("rb") as file:
                text = file.read(MAX_RECORD_BYTES + 1)
            if len(text) > MAX_RECORD_BYTES:
                raise OSError(f"over {MAX_RECORD_BYTES:,} bytes")
            return cls.model_validate(json.loads(text.decode()))
        except FileNotFoundError:
            raise UserError(f"no sweep record at {path} (removed, or not a sweep's folder); restore it, or run the "
                            "sweep again without --resume into a new --output-dir") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValidationError, RecursionError):  # pass 27: nested
            raise UserError(f"{path} is not a sweep record written by 'ignite-mbo sweep' (corrupt or foreign); "
                            "restore it or run the sweep again into a new --output-dir") from None

    def save(self, folder: Path) -> Path:
        """Write ``sweep.json`` into ``folder`` atomically, without the tracking URI's credentials."""
        stored = self.model_copy(update={"tracking_uri": without_credentials(self.tracking_uri)})
        return atomic_write(folder / SWEEP_FILE, lambda partial: partial.write_text(stored.model_dump_json(indent=2)))
