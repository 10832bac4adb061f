"""Run a search space as a Ray Tune sweep, recorded in MLflow, summarised as a table and a report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune

from ignite_mbo import tasks as task_registry
from ignite_mbo.config import TrialConfig
from ignite_mbo.errors import UserError
from ignite_mbo.platform import report as reporting
from ignite_mbo.platform.results import results_table, write_table
from ignite_mbo.platform.spaces import SweepSpec, load_spec
from ignite_mbo.platform.tracking import default_tracking_uri, start_sweep_run
from ignite_mbo.trainables.mbo import mbo_trainable, task_key

RESULTS_FILE = "results.parquet"
SWEEP_FILE = "sweep.json"


@dataclass
class SweepOutcome:
    sweep_dir: Path
    results_path: Path
    report_markdown: str
    num_trials: int
    num_errors: int


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``auto`` inside a Ray job), or start an embedded local Ray.

    ``address="local"`` always starts a fresh instance, so a stale session file from an earlier
    crash cannot break ``num_cpus``; it binds to 127.0.0.1.
    """
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1")


def trial_name(trial: tune.experiment.Trial) -> str:
    """Short, readable trial names, e.g. ``grad-ascent_ignite_TFBind8-Exact-v0_s3_00007``."""
    config = trial.config["trial"]
    return f"{config['baseline']}_{config['regularizer']['name']}_{config['task']}_s{config['seed']}_{trial.trial_id}"


def load_tasks(configs: list[TrialConfig], data_dir: str | None) -> dict[str, task_registry.Task]:
    """Every task the sweep uses, built once in the driver (bad or missing data fails here, before any trial)."""
    built: dict[str, task_registry.Task] = {}
    for config in configs:
        key = task_key(config)
        if key not in built:
            built[key] = task_registry.make(config.task, data_dir, **config.task_options)
    return built


def run_sweep(
    spec_path: str | Path, *, address: str | None = None, tracking_uri: str | None = None,
    output_dir: str | Path = "ignite_mbo_results", data_dir: str | None = None,
    gpus_per_trial: float | None = None, num_cpus: int | None = None,
) -> SweepOutcome:
    """Run every trial of the search space and write ``results.parquet`` and the gain report."""
    spec = load_spec(spec_path)
    if gpus_per_trial is not None:
        spec.resources.gpu = gpus_per_trial
    sweep_dir = Path(output_dir).resolve() / spec.name
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise UserError(f"sweep folder {sweep_dir} already exists; pass --output-dir elsewhere or delete it")
    configs = [TrialConfig.parse(config) for config in spec.trial_configs()]
    tasks = load_tasks(configs, data_dir)
    tracking_uri = tracking_uri or default_tracking_uri()

    connect(address, num_cpus)
    parent_run_id = start_sweep_run(tracking_uri, spec.name, spec.model_dump(mode="json"))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(
        {"spec": spec.model_dump(mode="json"), "tracking_uri": tracking_uri, "experiment": spec.name,
         "parent_run_id": parent_run_id}, indent=2))

    trainable = tune.with_parameters(mbo_trainable, tasks=tasks, tracking_uri=tracking_uri,
                                     experiment=spec.name, parent_run_id=parent_run_id)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}),
        param_space={"trial": tune.grid_search([config.model_dump(mode="json") for config in configs])},
        tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent_trials, reuse_actors=True,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(name=spec.name, storage_path=str(sweep_dir.parent), verbose=1),
    )
    results = tuner.fit()
    return finish_sweep(sweep_dir, results_table(results))


def finish_sweep(sweep_dir: Path, table) -> SweepOutcome:  # noqa: ANN001 (pandas.DataFrame)
    """Write the results table and the gain report next to it (and into MLflow)."""
    meta = json.loads((sweep_dir / SWEEP_FILE).read_text())
    results_path = sweep_dir / RESULTS_FILE
    write_table(table, results_path)
    markdown = ""
    if (table["status"] == "TERMINATED").any():
        report = reporting.build_report(table)
        report.write(sweep_dir)
        reporting.log_report_to_mlflow(report, sweep_dir, meta["tracking_uri"], meta["experiment"],
                                       parent_run_id=meta["parent_run_id"])
        markdown = report.to_markdown()
    return SweepOutcome(sweep_dir, results_path, markdown, len(table), int((table["status"] == "ERROR").sum()))
