"""Planning a sweep: the search space, every trial config and every option validated, before any side effect.

:func:`plan_sweep` reads the space, expands it once into its trial configs, checks the options and
picks the sweep folder (``OUTPUT_DIR/<name>``, ``<name>-2``, ... when the space ran there before;
the newest for ``--resume``); :func:`load_tasks` builds every task the trials use. Nothing is
started or written here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ignite_mbo import limits, mlflow_store, store_guard
from ignite_mbo import tasks as task_registry
from ignite_mbo.config import TrialConfig
from ignite_mbo.errors import UserError
from ignite_mbo.platform.checks import (
    check_local_resources,
    check_name,
    check_output_dir,
    check_printable,
    check_ray_address,
    check_storage_path,
)
from ignite_mbo.platform.record import SWEEP_FILE, SweepRecord
from ignite_mbo.platform.resume_files import check_saved_state, check_state_files, local_path
from ignite_mbo.platform.signals import check_resume_state
from ignite_mbo.platform.space_checks import check_resource_fraction
from ignite_mbo.platform.spaces import MAX_TRIALS, SweepSpec, load_spec
from ignite_mbo.trainables.mbo import shared_task_key

STORAGE_ENV = "IGNITE_MBO_STORAGE_PATH"


@dataclass
class SweepPlan:
    """A validated sweep: everything :func:`run_sweep` needs, checked before any side effect."""

    spec: SweepSpec
    trials: list[TrialConfig]
    """The space's grid points, expanded and validated once."""
    sweep_dir: Path
    tracking_uri: str
    storage_path: str
    address: str | None
    num_cpus: int | None
    resume: SweepRecord | None


def sweep_folder(output_dir: Path, name: str, resume: bool) -> Path:
    """The folder of this run of space ``name``: the first free one of ``name``, ``name-2``, ...; the
    newest existing one for ``resume``."""
    candidates = [output_dir / name] + [output_dir / f"{name}-{k}" for k in range(2, 1000)]
    existing = [path for path in candidates if path.exists()]
    if resume:
        if not existing:
            raise UserError(f"nothing to resume: {output_dir / name / SWEEP_FILE} does not exist; run the sweep "
                            "without --resume (and the same --output-dir) first")
        return existing[-1]
    for path in candidates:
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            return path
    raise UserError(f"{output_dir} holds 999 sweeps of {name!r}; pick another --output-dir")


def plan_sweep(
    spec_path: str | Path, *, address: str | None = None, tracking_uri: str | None = None,
    output_dir: str | Path = "ignite_mbo_results", gpus_per_trial: float | None = None,
    num_cpus: int | None = None, resume: bool = False, max_retries: int | None = None,
    overrides: dict[str, Any] | None = None, storage_path: str | None = None, max_trials: int = MAX_TRIALS,
) -> SweepPlan:
    """Validate the space, every trial config and every option; nothing is started or written."""
    if max_trials < 1:
        raise UserError(f"--max-trials must be at least 1 (got {max_trials})")
    if gpus_per_trial is not None and not 0 <= gpus_per_trial <= 1024:
        raise UserError(f"--gpus-per-trial must be between 0 and 1024 (got {gpus_per_trial})")
    if gpus_per_trial is not None:
        try:
            check_resource_fraction("--gpus-per-trial", gpus_per_trial)
        except ValueError as error:
            raise UserError(str(error)) from None
    if max_retries is not None and not 0 <= max_retries <= 100:
        raise UserError(f"--max-retries must be between 0 and 100 (got {max_retries})")
    check_printable("the search space", str(spec_path))  # its path goes into the printed resume command, one line
    spec = load_spec(spec_path, overrides, max_trials=max_trials)
    check_name(spec.name)
    if gpus_per_trial is not None:
        spec.resources.gpu = gpus_per_trial
    if max_retries is not None:
        spec.failure.max_retries = max_retries
    if not address:
        check_local_resources(spec.resources.cpu, spec.resources.gpu, num_cpus)
    check_ray_address(address)

    output = check_output_dir(Path(output_dir))
    sweep_dir = sweep_folder(output, spec.name, resume)
    record = None
    if resume:
        record = SweepRecord.load(sweep_dir)
        if record.spec != spec.model_dump(mode="json"):
            raise UserError(f"the search space differs from the one the sweep started with ({sweep_dir / SWEEP_FILE}); "
                            "resume with the same YAML file and options")
        given = store_guard.check_tracking_uri(tracking_uri) if tracking_uri else None
        if given and store_guard.without_credentials(given) != store_guard.without_credentials(record.tracking_uri):
            raise UserError(f"the sweep records to {record.tracking_uri}; resume without --tracking-uri or with that one")
        if given:  # sweep.json holds no password: the one given now is used
            record.tracking_uri = given
        storage_path = check_storage_path(storage_path) if storage_path else None  # absolute, as sweep.json has it
        recorded = str(local_path(record.storage_path) or record.storage_path)  # a record may hold file:///x
        if storage_path and storage_path.rstrip("/") != recorded.rstrip("/"):
            raise UserError(f"the sweep's Tune experiment is under {record.storage_path}; resume with that --storage-path")
        uri = store_guard.check_tracking_uri(record.tracking_uri, if_missing="put the sweep's store back there "
                                             "(sweep.json records its path)")
        storage = record.storage_path
        check_resume_state(record.experiment_path, sweep_dir, storage_path or os.environ.get(STORAGE_ENV))
        check_state_files(record.experiment_path, sweep_dir, storage_path or os.environ.get(STORAGE_ENV))
        check_saved_state(record.experiment_path)
        if not mlflow_store.is_sweep_run(uri, record.parent_run_id, record.experiment):
            raise UserError(f"the sweep's MLflow run {record.parent_run_id} is not in {store_guard.mask(uri)} (another "
                            "store in its place, or the run deleted); resume with the store the sweep started with, "
                            "or run the sweep again without --resume")
    else:
        uri = store_guard.check_tracking_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                                             or store_guard.default_tracking_uri())
        storage = check_storage_path(storage_path or os.environ.get(STORAGE_ENV) or str(sweep_dir.parent))
    return SweepPlan(spec, spec.trials(), sweep_dir, uri, storage, address, num_cpus, record)


def load_tasks(configs: list[TrialConfig], data_dir: str | None,
               search: dict[str, Any] | None = None) -> dict[str, task_registry.Task]:
    """Every task the sweep uses, built once in the driver (bad or missing data fails here, before any trial).

    Each grid point is checked against its task and this machine, and so is it with every sampled size of
    ``search`` (the space's distributions) at the largest value it can draw."""
    from ignite_mbo.platform.space_checks import check_largest_draws, largest_sizes

    search = search or {}
    largest = largest_sizes(search)
    built: dict[str, task_registry.Task] = {}
    for config in configs:
        key = shared_task_key(config)
        if key not in built:
            built[key] = task_registry.make(config.task, data_dir, **config.checked_task_options())
        limits.check_trial(config, built[key])
        check_largest_draws(config, built[key], largest, search)
    return built
