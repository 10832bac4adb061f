"""Run a search space as a Ray Tune sweep, recorded in MLflow, summarised as a table and a report.

The sweep folder ``OUTPUT_DIR/<name>/`` holds ``sweep.json`` (the space, the MLflow store and the
sweep's parent run, where Tune's experiment lives), ``results.parquet`` (one row per trial) and the
report. Tune's experiment (trial folders, checkpoints, searcher state) is in the same folder unless
``storage_path`` puts it on shared storage (a multi-node cluster needs that). ``resume=True`` restores
an interrupted sweep from that experiment and finishes it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from mlflow.tracking import MlflowClient
from ray import tune

from ignite_mbo import tasks as task_registry
from ignite_mbo.config import TrialConfig
from ignite_mbo.errors import UserError
from ignite_mbo.platform import report as reporting
from ignite_mbo.platform.results import results_table, write_table
from ignite_mbo.platform.spaces import OBJECTIVES, SweepSpec, load_spec, resolve_params
from ignite_mbo.platform.tracking import (
    TAG_PREFIX, default_tracking_uri, start_sweep_run, sweep_trial_runs,
)
from ignite_mbo.trainables.mbo import COMPLETED, NONFINITE, mbo_trainable, task_key

RESULTS_FILE = "results.parquet"
SWEEP_FILE = "sweep.json"
STORAGE_ENV = "IGNITE_MBO_STORAGE_PATH"
logger = logging.getLogger(__name__)


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


class NonFiniteNoRetry(tune.Callback):
    """A trial whose loss went NaN/inf fails at once: no retry, whatever ``failure.max_retries`` says.

    The trainable reports a result with ``nonfinite_loss`` just before it raises; that result is
    processed before the error, so the trial's retry budget is zero when Tune handles the error.
    """

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get(NONFINITE):
            trial.max_failures = 0


class TrialNamer:
    """Short, readable trial names, e.g. ``grad-ascent_ignite_TFBind8-Exact-v0_s3_00007``."""

    def __init__(self, grid: list[dict[str, Any]]) -> None:
        self.grid = grid

    def __call__(self, trial: tune.experiment.Trial) -> str:
        return self.prefix(trial.config) + trial.trial_id

    def prefix(self, params: dict[str, Any]) -> str:
        config = resolve_params(params, self.grid)
        regularizer = config.get("regularizer", {}).get("name", "none")
        return f"{config.get('baseline', 'grad-ascent')}_{regularizer}_{config.get('task', 'task')}_s{config.get('seed', 0)}_"


def load_tasks(configs: list[TrialConfig], data_dir: str | None) -> dict[str, task_registry.Task]:
    """Every task the sweep uses, built once in the driver (bad or missing data fails here, before any trial)."""
    built: dict[str, task_registry.Task] = {}
    for config in configs:
        key = task_key(config)
        if key not in built:
            built[key] = task_registry.make(config.task, data_dir, **config.task_options)
    return built


def search_setup(spec: SweepSpec, grid: list[dict[str, Any]]) -> tuple[dict[str, Any], Any, int, Any]:
    """Tune's ``param_space``, search algorithm, ``num_samples`` and scheduler for ``spec``.

    Without a search algorithm (or with ``random``) the grid points are one ``grid_search`` and
    ``search`` distributions are sampled ``num_samples`` times per point. With ``optuna`` each
    suggestion is repeated on every grid point (Tune's ``Repeater``; ``__trial_index__`` picks the
    point) and Optuna is told the mean objective of the repeats.
    """
    from ray.tune.search import Repeater
    from ray.tune.search.basic_variant import BasicVariantGenerator

    domains = spec.search_domains()
    search_alg, num_samples = None, spec.num_samples
    if spec.search_alg is not None and spec.search_alg.name == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        seed = spec.search_alg.seed
        sampler = (optuna.samplers.TPESampler(seed=seed) if spec.search_alg.sampler == "tpe"
                   else optuna.samplers.RandomSampler(seed=seed))
        search_alg = Repeater(OptunaSearch(sampler=sampler), repeat=len(grid), set_index=True)
        param_space: dict[str, Any] = {"search": domains}
        num_samples = spec.num_samples * len(grid)
    else:
        if spec.search_alg is not None:  # random, with a seed for reproducible samples
            search_alg = BasicVariantGenerator(random_state=spec.search_alg.seed)
        param_space = {"trial": tune.grid_search(grid)}
        if domains:
            param_space["search"] = domains

    scheduler = None
    if spec.scheduler is not None and spec.scheduler.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="surrogate_epochs", max_t=spec.scheduler.max_t,
                                  grace_period=spec.scheduler.grace_period,
                                  reduction_factor=spec.scheduler.reduction_factor,
                                  stop_last_trials=False)  # a trial past max_t still runs its search
    elif spec.scheduler is not None and spec.scheduler.name == "median":
        from ray.tune.schedulers import MedianStoppingRule

        scheduler = MedianStoppingRule(time_attr="surrogate_epochs", grace_period=spec.scheduler.grace_period,
                                       min_samples_required=spec.scheduler.min_samples_required)
    return param_space, search_alg, num_samples, scheduler


def effective_resources(spec: SweepSpec, address: str | None) -> dict[str, float]:
    """Per-trial resources; on a local Ray without GPUs a GPU request becomes CPU-only (same space, no change)."""
    gpu = spec.resources.gpu
    if gpu > 0 and not address and not ray.cluster_resources().get("GPU"):
        logger.warning("no GPU on this machine: running the space's trials on CPU (resources.gpu=%s ignored)", gpu)
        gpu = 0.0
    return {"cpu": spec.resources.cpu, "gpu": gpu}


def check_cluster_storage(address: str | None, tracking_uri: str, storage: str) -> None:
    """On a multi-node cluster, trials on other nodes cannot reach the driver's local files."""
    if not address:
        return
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    local = [what for what, uri in (("--tracking-uri", tracking_uri), ("--storage-path", storage))
             if "://" not in uri or uri.startswith(("sqlite:", "file:"))]
    if not local:
        return
    message = (f"{' and '.join(local)} point(s) at this machine's disk; trials on other nodes of the cluster "
               "cannot write there: pass --tracking-uri http://HEAD_PRIVATE_IP:5000 (the MLflow server) and "
               "--storage-path s3://BUCKET/PATH or a shared filesystem (docs/cluster.md)")
    if len(nodes) > 1:
        raise UserError(message)
    logger.warning("%s (fine while this cluster has one node)", message)


def _spec_for(spec_path: str | Path, overrides: dict[str, Any] | None, gpus_per_trial: float | None,
              max_retries: int | None) -> SweepSpec:
    spec = load_spec(spec_path, overrides)
    if gpus_per_trial is not None:
        if gpus_per_trial < 0:
            raise UserError(f"--gpus-per-trial must be >= 0 (got {gpus_per_trial})")
        spec.resources.gpu = gpus_per_trial
    if max_retries is not None:
        if max_retries < 0:
            raise UserError(f"--max-retries must be >= 0 (got {max_retries})")
        spec.failure.max_retries = max_retries
    return spec


def run_sweep(
    spec_path: str | Path, *, address: str | None = None, tracking_uri: str | None = None,
    output_dir: str | Path = "ignite_mbo_results", data_dir: str | None = None,
    gpus_per_trial: float | None = None, num_cpus: int | None = None, resume: bool = False,
    max_retries: int | None = None, overrides: dict[str, Any] | None = None, storage_path: str | None = None,
) -> SweepOutcome:
    """Run every trial of the search space (or finish an interrupted sweep) and write the table and report."""
    spec = _spec_for(spec_path, overrides, gpus_per_trial, max_retries)
    sweep_dir = Path(output_dir).resolve() / spec.name
    spec_json = spec.model_dump(mode="json")
    if resume:
        meta_path = sweep_dir / SWEEP_FILE
        if not meta_path.is_file():
            raise UserError(f"nothing to resume: {meta_path} does not exist; run the sweep without --resume "
                            "(and the same --output-dir) first")
        meta = json.loads(meta_path.read_text())
        if not {"spec", "tracking_uri", "parent_run_id"} <= set(meta):
            raise UserError(f"{meta_path} is not a sweep record written by 'ignite-mbo sweep'; nothing to resume")
        meta.setdefault("storage_path", str(sweep_dir.parent))  # sweeps from before --storage-path
        meta.setdefault("experiment_path", str(sweep_dir))
        if meta["spec"] != spec_json:
            raise UserError(f"the search space differs from the one the sweep started with ({meta_path}); "
                            "resume with the same YAML file and options")
        if tracking_uri and tracking_uri != meta["tracking_uri"]:
            raise UserError(f"the sweep records to {meta['tracking_uri']}; resume without --tracking-uri or with that one")
        if storage_path and storage_path.rstrip("/") != meta["storage_path"].rstrip("/"):
            raise UserError(f"the sweep's Tune experiment is under {meta['storage_path']}; resume with that --storage-path")
    elif sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise UserError(f"sweep folder {sweep_dir} already exists; pass --resume to finish an interrupted sweep, "
                        "or --output-dir elsewhere, or delete it")

    grid = spec.trial_configs()
    configs = [TrialConfig.parse(config) for config in grid]
    tasks = load_tasks(configs, data_dir)
    connect(address, num_cpus)
    resources = effective_resources(spec, address)
    goal = spec.objective_spec

    if resume:
        client = MlflowClient(meta["tracking_uri"])
        client.update_run(meta["parent_run_id"], status="RUNNING")
        resumes = int(client.get_run(meta["parent_run_id"]).data.tags.get(f"{TAG_PREFIX}resumed", "0")) + 1
        client.set_tag(meta["parent_run_id"], f"{TAG_PREFIX}resumed", str(resumes))
    else:
        tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
        storage = storage_path or os.environ.get(STORAGE_ENV) or str(sweep_dir.parent)
        check_cluster_storage(address, tracking_uri, storage)
        tags = {f"{TAG_PREFIX}num_grid_points": str(len(grid)),
                f"{TAG_PREFIX}search_alg": spec.search_alg.name if spec.search_alg else "grid",
                f"{TAG_PREFIX}scheduler": spec.scheduler.name if spec.scheduler else "fifo"}
        if goal is not None:
            tags.update({f"{TAG_PREFIX}objective": goal.name, f"{TAG_PREFIX}objective_mode": goal.mode,
                         f"{TAG_PREFIX}objective_kind": goal.label})
        parent_run_id = start_sweep_run(tracking_uri, spec.name, spec_json, tags)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        meta = {"spec": spec_json, "tracking_uri": tracking_uri, "experiment": spec.name,
                "parent_run_id": parent_run_id, "storage_path": storage,
                "experiment_path": f"{storage.rstrip('/')}/{spec.name}"}
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(meta, indent=2))

    trainable = tune.with_resources(
        tune.with_parameters(mbo_trainable, tasks=tasks, tracking_uri=meta["tracking_uri"],
                             experiment=meta["experiment"], parent_run_id=meta["parent_run_id"], grid=grid,
                             objective=spec.objective, max_retries=spec.failure.max_retries),
        resources,
    )
    param_space, search_alg, num_samples, scheduler = search_setup(spec, grid)
    if resume and tune.Tuner.can_restore(meta["experiment_path"]):
        tuner = tune.Tuner.restore(meta["experiment_path"], trainable, resume_unfinished=True, resume_errored=False)
    else:  # a fresh sweep, or one interrupted before Tune saved anything
        namer = TrialNamer(grid)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric="objective" if goal else None, mode=goal.mode if goal else None,
                search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
                max_concurrent_trials=spec.max_concurrent_trials, reuse_actors=True,
                trial_name_creator=namer, trial_dirname_creator=namer),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=meta["storage_path"], verbose=1,
                failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[NonFiniteNoRetry()]),
        )
    # Each trial checkpoint forces an experiment snapshot (num_to_keep=1): intended, so resume is current.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    results = tuner.fit()
    table = collect_results(results, grid, spec)
    return finish_sweep(sweep_dir, table)


@dataclass
class _Trial:
    """What ``results_table`` reads from a Tune result, with the resolved trial config."""

    config: dict[str, Any]
    metrics: dict[str, Any]
    error: BaseException | None
    path: str


def collect_results(results: Any, grid: list[dict[str, Any]], spec: SweepSpec) -> pd.DataFrame:
    """One row per Tune trial: ``results_table`` plus the objective, attempts, and clean statuses.

    Status is TERMINATED (finished), ERROR (raised, retries spent, or a non-finite loss), or
    STOPPED (ended early by a scheduler, no final scores).
    """
    trials, extra = [], {}
    namer = TrialNamer(grid)
    for result in results:
        metrics = dict(result.metrics or {})
        if "trial_id" not in metrics:  # a trial that never reported: its id is in its folder's name
            metrics["trial_id"] = Path(result.path).name.removeprefix(namer.prefix(result.config))
        trial_id = metrics["trial_id"]
        trials.append(_Trial({"trial": resolve_params(result.config, grid)}, metrics, result.error, result.path))
        status = "ERROR" if result.error else ("TERMINATED" if metrics.get(COMPLETED) else "STOPPED")
        reason = metrics.get("error") if metrics.get(NONFINITE) else None
        extra[trial_id] = {
            "status": status, "reason": reason,
            "objective": metrics.get("objective") if status == "TERMINATED" else None,
            "attempt": metrics.get("attempt"),
            "restored_surrogates": metrics.get("restored_surrogates"),
        }
    table = results_table(trials)
    for column in ("status", "objective", "attempt", "restored_surrogates"):
        table[column] = [extra[trial_id][column] for trial_id in table["trial_id"]]
    table["error"] = [extra[trial_id]["reason"] or error for trial_id, error in zip(table["trial_id"], table["error"])]
    stopped = table["status"] == "STOPPED"
    table.loc[stopped, "error"] = "stopped early by the scheduler"
    goal = spec.objective_spec
    table["objective_kind"] = goal.label if goal else None
    return table


def reconcile_mlflow(meta: dict[str, Any], table: pd.DataFrame) -> dict[str, Any]:
    """Make MLflow agree with the finished Tune run: one live run per trial, statuses that match.

    Runs of trials Tune does not know (created by an attempt the driver lost before saving its
    state, whose trial was regenerated under a new id) are deleted; an errored or stopped trial's
    run still RUNNING (its worker died) is closed FAILED / KILLED. Fills ``mlflow_run_id``.
    """
    client = MlflowClient(meta["tracking_uri"])
    runs = sweep_trial_runs(client, meta["experiment"], meta["parent_run_id"])
    by_trial: dict[str, list] = {}
    for run in runs:
        by_trial.setdefault(run.data.tags.get(f"{TAG_PREFIX}trial_id", ""), []).append(run)
    known = set(table["trial_id"])
    deleted = 0
    for trial_id, group in by_trial.items():
        group.sort(key=lambda run: run.info.start_time)
        for run in group if trial_id not in known else group[1:]:
            client.set_tag(run.info.run_id, f"{TAG_PREFIX}orphan", "trial unknown to the resumed sweep")
            client.delete_run(run.info.run_id)
            deleted += 1
    run_ids = []
    for row in table.itertuples():
        group = by_trial.get(row.trial_id) or []
        run = group[0] if group else None
        run_ids.append(run.info.run_id if run else None)
        if run is None or run.info.status != "RUNNING":
            continue
        if row.status == "ERROR":
            client.set_tag(run.info.run_id, f"{TAG_PREFIX}error", str(row.error)[:5000])
            client.set_terminated(run.info.run_id, "FAILED")
        elif row.status == "STOPPED":
            client.set_tag(run.info.run_id, f"{TAG_PREFIX}stopped", "by the scheduler")
            client.set_terminated(run.info.run_id, "KILLED")
    table["mlflow_run_id"] = run_ids
    return {"orphaned_runs_deleted": deleted}


def best_trial(table: pd.DataFrame, spec_json: dict[str, Any]) -> pd.Series | None:
    """The finished trial with the best objective, if the sweep has one."""
    name = spec_json.get("objective")
    if not name:
        return None
    done = table[(table["status"] == "TERMINATED") & pd.to_numeric(table["objective"], errors="coerce").notna()]
    if done.empty:
        return None
    values = pd.to_numeric(done["objective"])
    return done.loc[values.idxmax() if OBJECTIVES[name].mode == "max" else values.idxmin()]


def sensitivity_plots(table: pd.DataFrame, sweep_dir: Path, params: list[str]) -> tuple[list[Path], list[str]]:
    """``sensitivity_<param>.png`` per parameter (gain vs. value); notes for those that cannot be drawn."""
    paths, notes = [], []
    for param in params:
        try:
            paths.append(reporting.plot_sensitivity(table, param, sweep_dir / f"sensitivity_{param}.png"))
        except UserError as error:
            notes.append(f"no sensitivity plot for {param}: {error}")
    return paths, notes


def report_sweep(sweep_dir: Path, table: pd.DataFrame, meta: dict[str, Any], *, mlflow: bool = True) -> str:
    """Build, write (and log to the sweep's MLflow run) the gain report and sensitivity plots; its markdown."""
    report = reporting.build_report(table)
    report.write(sweep_dir)
    if mlflow:
        reporting.log_report_to_mlflow(report, sweep_dir, meta["tracking_uri"], meta["experiment"],
                                       parent_run_id=meta["parent_run_id"])
    markdown = report.to_markdown()
    params = (meta["spec"].get("report") or {}).get("sensitivity") or []
    paths, notes = sensitivity_plots(table, sweep_dir, params)
    if mlflow and paths:
        client = MlflowClient(meta["tracking_uri"])
        for path in paths:
            client.log_artifact(meta["parent_run_id"], str(path), artifact_path="report")
    lines = [f"Sensitivity of the 100th-percentile gain: {path}" for path in paths] + notes
    return markdown + ("\n" + "\n\n".join(lines) + "\n" if lines else "")


def finish_sweep(sweep_dir: Path, table: pd.DataFrame) -> SweepOutcome:
    """Reconcile MLflow, write the results table and the gain report next to it (and into MLflow)."""
    meta = json.loads((sweep_dir / SWEEP_FILE).read_text())
    counts = reconcile_mlflow(meta, table)
    results_path = sweep_dir / RESULTS_FILE
    write_table(table, results_path)
    markdown = ""
    if (table["status"] == "TERMINATED").any():
        markdown = report_sweep(sweep_dir, table, meta)
    best = best_trial(table, meta["spec"])
    client = MlflowClient(meta["tracking_uri"])
    tags = {f"{TAG_PREFIX}num_trials": str(len(table)),
            f"{TAG_PREFIX}num_errors": str(int((table["status"] == "ERROR").sum())),
            f"{TAG_PREFIX}orphaned_runs_deleted": str(counts["orphaned_runs_deleted"])}
    if best is not None:
        tags[f"{TAG_PREFIX}best_trial_run_id"] = str(best["mlflow_run_id"])
        client.log_metric(meta["parent_run_id"], "best_objective", float(best["objective"]))
        config = {key.removeprefix("config."): value for key, value in best.items()
                  if key.startswith("config.") and not key.startswith("config.task_options")}
        goal = OBJECTIVES[meta["spec"]["objective"]]
        markdown += (f"\nBest trial ({goal.name}, {goal.mode}; {goal.kind}): {float(best['objective']):.4g}, "
                     f"MLflow run {best['mlflow_run_id']}: {json.dumps(config)}\n")
    for key, value in tags.items():
        client.set_tag(meta["parent_run_id"], key, value)
    client.set_terminated(meta["parent_run_id"], "FINISHED")
    return SweepOutcome(sweep_dir, results_path, markdown, len(table), int((table["status"] == "ERROR").sum()))
