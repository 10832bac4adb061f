"""Run a search space as a Ray Tune sweep, recorded in MLflow, summarised as a table and a report.

A sweep folder ``OUTPUT_DIR/<name>/`` (``<name>-2``, ``-3``, ... when the space ran there before)
holds ``sweep.json`` (:class:`SweepRecord`), ``results.parquet`` (one row per trial) and the
report. Tune's experiment (trial folders, checkpoints, searcher state) is in the same folder unless
``storage_path`` puts it on shared storage (a multi-node cluster needs that). ``resume=True``
restores the newest sweep folder of the space from that experiment and finishes it.

Everything the user gave is validated (:func:`plan_sweep`) before Ray starts, an MLflow run is
created or a file is written. Once the parent run exists, every way out of the sweep closes it:
FINISHED, FAILED with the error, or KILLED when interrupted (SIGINT).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pandas as pd
from ray import tune

from ignite_mbo import limits
from ignite_mbo import mlflow_store as store
from ignite_mbo import tasks as task_registry
from ignite_mbo.config import TrialConfig
from ignite_mbo.errors import UserError
from ignite_mbo.platform import local_ray
from ignite_mbo.platform import report as reporting
from ignite_mbo.platform.checks import (
    check_local_resources,
    check_name,
    check_output_dir,
    check_storage_path,
)
from ignite_mbo.platform.record import RESULTS_FILE, SWEEP_FILE, SweepRecord
from ignite_mbo.platform.results import results_table, write_table
from ignite_mbo.platform.spaces import MAX_TRIALS, OBJECTIVES, SweepSpec, load_spec, resolve_params
from ignite_mbo.trainables.mbo import COMPLETED, NONFINITE, mbo_trainable, task_key
from ignite_mbo.trainables.params import run_name

STORAGE_ENV = "IGNITE_MBO_STORAGE_PATH"
INTERRUPTED = "interrupted (SIGINT); finish the sweep with --resume"

__all__ = ["RESULTS_FILE", "SWEEP_FILE", "SweepInterrupted", "SweepOutcome", "run_sweep"]


@dataclass
class SweepOutcome:
    sweep_dir: Path
    results_path: Path
    report_markdown: str
    num_trials: int
    num_errors: int
    tracking_uri: str
    report_files: list[Path]
    ui_url: str
    errors: list[str]
    """One line per failed trial: which trial and why."""


class SweepInterrupted(Exception):
    """The sweep was stopped by SIGINT: its state is saved and ``--resume`` finishes it."""

    def __init__(self, sweep_dir: Path) -> None:
        super().__init__(f"sweep interrupted; its state is in {sweep_dir}")
        self.sweep_dir = sweep_dir


@dataclass
class SweepPlan:
    """A validated sweep: everything :func:`run_sweep` needs, checked before any side effect."""

    spec: SweepSpec
    grid: list[dict[str, Any]]
    configs: list[TrialConfig]
    sweep_dir: Path
    tracking_uri: str
    storage_path: str
    address: str | None
    num_cpus: int | None
    resume: SweepRecord | None


# ---- planning: validation only -------------------------------------------------------------------

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
    if max_retries is not None and not 0 <= max_retries <= 100:
        raise UserError(f"--max-retries must be between 0 and 100 (got {max_retries})")
    spec = load_spec(spec_path, overrides, max_trials=max_trials)
    check_name(spec.name)
    if gpus_per_trial is not None:
        spec.resources.gpu = gpus_per_trial
    if max_retries is not None:
        spec.failure.max_retries = max_retries
    if not address:
        check_local_resources(spec.resources.cpu, spec.resources.gpu, num_cpus)
    grid = spec.trial_configs()
    configs = [TrialConfig.parse(config) for config in grid]

    output = check_output_dir(Path(output_dir))
    sweep_dir = sweep_folder(output, spec.name, resume)
    record = None
    if resume:
        record = SweepRecord.load(sweep_dir)
        if record.spec != spec.model_dump(mode="json"):
            raise UserError(f"the search space differs from the one the sweep started with ({sweep_dir / SWEEP_FILE}); "
                            "resume with the same YAML file and options")
        if tracking_uri and store.check_tracking_uri(tracking_uri) != record.tracking_uri:
            raise UserError(f"the sweep records to {record.tracking_uri}; resume without --tracking-uri or with that one")
        if storage_path and storage_path.rstrip("/") != record.storage_path.rstrip("/"):
            raise UserError(f"the sweep's Tune experiment is under {record.storage_path}; resume with that --storage-path")
        uri = store.check_tracking_uri(record.tracking_uri, must_exist=True)
        storage = record.storage_path
    else:
        uri = store.check_tracking_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or store.default_tracking_uri())
        storage = check_storage_path(storage_path or os.environ.get(STORAGE_ENV) or str(sweep_dir.parent))
    return SweepPlan(spec, grid, configs, sweep_dir, uri, storage, address, num_cpus, record)


# ---- Ray --------------------------------------------------------------------------------------------

def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``auto`` inside a Ray job), or start an embedded local Ray.

    ``address="local"`` always starts a fresh instance, so a stale session file from an earlier
    crash cannot break ``num_cpus``; it requires a per-sweep token (:mod:`local_ray`).
    """
    import logging

    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    else:
        local_ray.start(num_cpus)


def load_tasks(configs: list[TrialConfig], data_dir: str | None) -> dict[str, task_registry.Task]:
    """Every task the sweep uses, built once in the driver (bad or missing data fails here, before any trial)."""
    built: dict[str, task_registry.Task] = {}
    for config in configs:
        key = task_key(config)
        if key not in built:
            built[key] = task_registry.make(config.task, data_dir, **config.checked_task_options())
        limits.check_trial(config, built[key])
    return built


def effective_resources(spec: SweepSpec, address: str | None) -> dict[str, float]:
    """Per-trial resources; on a local Ray without GPUs a GPU request becomes CPU-only (same space, no change)."""
    import ray

    gpu = spec.resources.gpu
    if gpu > 0 and not address and not ray.cluster_resources().get("GPU"):
        print(f"note: no GPU on this machine; the space's trials run on CPU (resources.gpu={gpu:g} ignored)",
              file=sys.stderr)
        gpu = 0.0
    return {"cpu": spec.resources.cpu, "gpu": gpu}


def check_cluster(plan: SweepPlan) -> None:
    """On a cluster: local stores are unreachable from other nodes; resources no node has are an error."""
    import ray

    if not plan.address:
        return
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    local = [what for what, uri in (("--tracking-uri", plan.tracking_uri), ("--storage-path", plan.storage_path))
             if "://" not in uri or uri.startswith(("sqlite:", "file:"))]
    if local:
        message = (f"{' and '.join(local)} point(s) at this machine's disk; trials on other nodes of the cluster "
                   "cannot write there: pass --tracking-uri http://HEAD_PRIVATE_IP:5000 (the MLflow server) and "
                   "--storage-path s3://BUCKET/PATH or a shared filesystem (docs/cluster.md)")
        if len(nodes) > 1:
            raise UserError(message)
        print(f"note: {message} (fine while this cluster has one node)", file=sys.stderr)


class SweepRun:
    """The sweep's MLflow parent run and folder, opened after validation; closed on every way out."""

    def __init__(self, plan: SweepPlan) -> None:
        self.plan = plan
        spec = plan.spec
        if plan.resume is not None:
            self.record = plan.resume
            store.reopen_sweep_run(self.record.tracking_uri, self.record.parent_run_id)
            return
        goal = spec.objective_spec
        tags = {f"{store.TAG_PREFIX}num_grid_points": str(len(plan.grid)),
                f"{store.TAG_PREFIX}search_alg": spec.search_alg.name if spec.search_alg else "grid",
                f"{store.TAG_PREFIX}scheduler": spec.scheduler.name if spec.scheduler else "fifo",
                f"{store.TAG_PREFIX}sweep_dir": str(plan.sweep_dir)}
        if goal is not None:
            tags.update({f"{store.TAG_PREFIX}objective": goal.name, f"{store.TAG_PREFIX}objective_mode": goal.mode,
                         f"{store.TAG_PREFIX}objective_kind": goal.label})
        spec_json = spec.model_dump(mode="json")
        parent = store.start_sweep_run(plan.tracking_uri, spec.name, f"sweep:{plan.sweep_dir.name}", spec_json, tags)
        self.record = SweepRecord(spec=spec_json, tracking_uri=plan.tracking_uri, experiment=spec.name,
                                  parent_run_id=parent, storage_path=plan.storage_path,
                                  experiment_path=f"{plan.storage_path.rstrip('/')}/{plan.sweep_dir.name}")
        try:
            plan.sweep_dir.mkdir(parents=True, exist_ok=True)
            self.record.save(plan.sweep_dir)
        except OSError as error:
            self.close("FAILED", f"cannot write {plan.sweep_dir}: {error}")
            raise UserError(f"cannot write the sweep folder {plan.sweep_dir} ({error.strerror}); "
                            "pick another --output-dir") from None

    def close(self, status: str, reason: str | None = None) -> None:
        """Close the parent run (and trial runs left RUNNING) as FINISHED or FAILED with ``reason``."""
        record = self.record
        if reason:
            store.close_running_trial_runs(record.tracking_uri, record.experiment, record.parent_run_id,
                                           status, reason)
        store.close_run(record.tracking_uri, record.parent_run_id, status, reason)

    def interrupted(self, since_ms: int) -> None:
        """The sweep was interrupted at ``since_ms``: the trials it stopped and the parent run become KILLED."""
        record = self.record
        store.mark_interrupted(record.tracking_uri, record.experiment, record.parent_run_id, INTERRUPTED, since_ms)
        store.close_run(record.tracking_uri, record.parent_run_id, "KILLED", INTERRUPTED, tag="interrupted")


class Interruptions:
    """SIGINT while Tune runs: the first stops the sweep gracefully (through Tune's SIGUSR1 handler),
    the second exits at once with status 130. ``resume_hint`` is printed either way."""

    def __init__(self, resume_hint: str) -> None:
        self.resume_hint = resume_hint
        self.count = 0
        self.first_at_ms = 0
        self.previous: Any = None

    def __enter__(self) -> Interruptions:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune's own handler would replace this one
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            self.first_at_ms = int(time.time() * 1000) - 1000  # slack for clocks of other processes
            print("\ninterrupted: stopping the running trials and saving the sweep "
                  "(press Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop
            return
        print(f"\nexited at once; {self.resume_hint}", file=sys.stderr, flush=True)
        os._exit(130)


def build_tuner(plan: SweepPlan, record: SweepRecord, tasks: dict[str, task_registry.Task],
                callbacks: list[Any]) -> Any:
    """A fresh Tuner for the plan, or the interrupted sweep's Tuner restored from its experiment."""
    spec, grid = plan.spec, plan.grid
    numbered = bool(spec.search) or spec.num_samples > 1 or len({run_name(c) for c in grid}) < len(grid)
    trainable = tune.with_resources(
        tune.with_parameters(mbo_trainable, tasks=tasks, tracking_uri=record.tracking_uri,
                             experiment=record.experiment, parent_run_id=record.parent_run_id, grid=grid,
                             objective=spec.objective, numbered_names=numbered),
        effective_resources(spec, plan.address),
    )
    if plan.resume is not None and tune.Tuner.can_restore(record.experiment_path):
        return tune.Tuner.restore(record.experiment_path, trainable, resume_unfinished=True, resume_errored=False)
    goal = spec.objective_spec
    param_space, search_alg, num_samples, scheduler = search_setup(spec, grid)
    namer = TrialNamer(grid)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="objective" if goal else None, mode=goal.mode if goal else None,
            search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
            max_concurrent_trials=spec.max_concurrent_trials, reuse_actors=True,
            trial_name_creator=namer, trial_dirname_creator=namer),
        run_config=tune.RunConfig(
            name=plan.sweep_dir.name, storage_path=record.storage_path, verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=callbacks),
    )


def run_sweep(
    spec_path: str | Path, *, address: str | None = None, tracking_uri: str | None = None,
    output_dir: str | Path = "ignite_mbo_results", data_dir: str | None = None,
    gpus_per_trial: float | None = None, num_cpus: int | None = None, resume: bool = False,
    max_retries: int | None = None, overrides: dict[str, Any] | None = None, storage_path: str | None = None,
    max_trials: int = MAX_TRIALS, resume_hint: str = "run the same command with --resume to finish it",
    quiet: bool = False,
) -> SweepOutcome:
    """Run every trial of the search space (or finish an interrupted sweep); write the table and report.

    Raises :class:`SweepInterrupted` after a first SIGINT (the parent run is KILLED, the sweep can
    be resumed), UserError on bad input (before anything is written).
    """
    from ignite_mbo.platform.console import TrialTable, quiet_ray

    plan = plan_sweep(spec_path, address=address, tracking_uri=tracking_uri, output_dir=output_dir,
                      gpus_per_trial=gpus_per_trial, num_cpus=num_cpus, resume=resume, max_retries=max_retries,
                      overrides=overrides, storage_path=storage_path, max_trials=max_trials)
    tasks = load_tasks(plan.configs, data_dir)
    quiet_ray()
    connect(address, num_cpus)
    check_cluster(plan)
    sweep = SweepRun(plan)
    callbacks: list[Any] = [NonFiniteNoRetry()]
    if not quiet:
        callbacks.append(TrialTable(plan.grid))
    try:
        with Interruptions(resume_hint) as interruptions:
            tuner = build_tuner(plan, sweep.record, tasks, callbacks)
            results = tuner.fit()
        if interruptions.count:
            sweep.interrupted(interruptions.first_at_ms)
            raise SweepInterrupted(plan.sweep_dir)
        table = collect_results(results, plan.grid, plan.spec)
        return finish_sweep(plan.sweep_dir, table, sweep.record)
    except SweepInterrupted:
        raise
    except KeyboardInterrupt:
        sweep.interrupted(int(time.time() * 1000) - 60_000)
        raise SweepInterrupted(plan.sweep_dir) from None
    except BaseException as error:
        sweep.close("FAILED", f"{type(error).__name__}: {error}")
        raise


# ---- Tune pieces ------------------------------------------------------------------------------------

class NonFiniteNoRetry(tune.Callback):
    """A trial whose loss went NaN/inf fails at once: no retry, whatever ``failure.max_retries`` says.

    The trainable reports a result with ``nonfinite_loss`` just before it raises; that result is
    processed before the error, so the trial's retry budget is zero when Tune handles the error.
    """

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        if result.get(NONFINITE):
            trial.max_failures = 0


class TrialNamer:
    """Tune's trial names and folders, e.g. ``grad-ascent_ignite_TFBind8-Exact-v0_s3_00007``."""

    def __init__(self, grid: list[dict[str, Any]]) -> None:
        self.grid = grid

    def __call__(self, trial: Any) -> str:
        return self.prefix(trial.config) + trial.trial_id

    def prefix(self, params: dict[str, Any]) -> str:
        config = resolve_params(params, self.grid)
        regularizer = (config.get("regularizer") or {}).get("name", "none")
        return f"{config.get('baseline', 'grad-ascent')}_{regularizer}_{config.get('task', 'task')}_s{config.get('seed', 0)}_"


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
    search_alg: Any = None
    num_samples = spec.num_samples
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

    scheduler: Any = None
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


# ---- results ------------------------------------------------------------------------------------------

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
    pairs = zip(table["trial_id"], table["error"], strict=True)
    table["error"] = [extra[trial_id]["reason"] or error for trial_id, error in pairs]
    stopped = table["status"] == "STOPPED"
    table.loc[stopped, "error"] = "stopped early by the scheduler"
    goal = spec.objective_spec
    table["objective_kind"] = goal.label if goal else None
    return table


def reconcile_mlflow(record: SweepRecord, table: pd.DataFrame) -> dict[str, Any]:
    """Make MLflow agree with the finished Tune run: one live run per trial, statuses that match.

    Runs of trials Tune does not know (created by an attempt the driver lost before saving its
    state, whose trial was regenerated under a new id) are deleted; an errored or stopped trial's
    run is closed FAILED / KILLED with its reason. Fills ``mlflow_run_id``.
    """
    uri = record.tracking_uri
    runs = store.sweep_trial_runs(uri, record.experiment, record.parent_run_id)
    by_trial: dict[str, list[Any]] = {}
    for run in runs:
        by_trial.setdefault(run.data.tags.get(f"{store.TAG_PREFIX}trial_id", ""), []).append(run)
    known = set(table["trial_id"])
    deleted = 0
    for trial_id, group in by_trial.items():
        group.sort(key=lambda run: run.info.start_time)
        for run in group if trial_id not in known else group[1:]:
            store.delete_run(uri, run.info.run_id, "trial unknown to the resumed sweep")
            deleted += 1
    run_ids = []
    for row in table.itertuples():
        group = by_trial.get(str(row.trial_id)) or []
        run = group[0] if group else None
        run_ids.append(run.info.run_id if run else None)
        if run is None:
            continue
        if row.status == "ERROR" and run.info.status == "RUNNING":
            store.close_run(uri, run.info.run_id, "FAILED", str(row.error))
        elif row.status == "STOPPED" and run.info.status in ("RUNNING", "KILLED"):
            store.close_run(uri, run.info.run_id, "KILLED", "by the scheduler", tag="stopped")
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


def report_sweep(sweep_dir: Path, table: pd.DataFrame, record: SweepRecord | None, *,
                 mlflow: bool = True) -> tuple[str, list[Path]]:
    """Build and write the gain report, reproduction check and sensitivity plots; with ``mlflow``, log
    them to the sweep's parent run (replacing an earlier report). Returns the markdown and the files."""
    report = reporting.build_report(table)
    paths = reporting.write_report(report, sweep_dir)
    markdown = reporting.render_markdown(report)
    params = ((record.spec.get("report") or {}).get("sensitivity") or []) if record else []
    notes = []
    for param in params:
        try:
            paths.append(reporting.plot_sensitivity(table, param, sweep_dir / f"sensitivity_{param}.png"))
            markdown += f"\nSensitivity of the 100th-percentile gain: {paths[-1]}\n"
        except UserError as error:
            notes.append(f"no sensitivity plot for {param}: {error}")
    if notes:
        markdown += "\n" + "\n\n".join(notes) + "\n"
    if mlflow and record is not None:
        store.log_report(record.tracking_uri, record.parent_run_id, paths)
    return markdown, paths


def finish_sweep(sweep_dir: Path, table: pd.DataFrame, record: SweepRecord) -> SweepOutcome:
    """Reconcile MLflow, write the results table and the report next to it (and into MLflow)."""
    counts = reconcile_mlflow(record, table)
    results_path = sweep_dir / RESULTS_FILE
    write_table(table, results_path)
    markdown, paths = "", list[Path]()
    if (table["status"] == "TERMINATED").any():
        markdown, paths = report_sweep(sweep_dir, table, record)
    best = best_trial(table, record.spec)
    uri, parent = record.tracking_uri, record.parent_run_id
    num_errors = int((table["status"] == "ERROR").sum())
    tags = {f"{store.TAG_PREFIX}num_trials": str(len(table)),
            f"{store.TAG_PREFIX}num_errors": str(num_errors),
            f"{store.TAG_PREFIX}orphaned_runs_deleted": str(counts["orphaned_runs_deleted"])}
    if best is not None:
        tags[f"{store.TAG_PREFIX}best_trial_run_id"] = str(best["mlflow_run_id"])
        store.log_run_metric(uri, parent, "best_objective", float(best["objective"]))
        config = {key.removeprefix("config."): value for key, value in best.items()
                  if key.startswith("config.") and not key.startswith("config.task_options")}
        goal = OBJECTIVES[record.spec["objective"]]
        markdown += (f"\nBest trial ({goal.name}, {goal.mode}; {goal.kind}): {float(best['objective']):.4g}, "
                     f"MLflow run {best['mlflow_run_id']}: {pd.Series(config).to_json()}\n")
    store.set_run_tags(uri, parent, tags)
    store.close_run(uri, parent, "FINISHED")
    errors = [f"{row.baseline} {row.regularizer} {row.task} s{row.seed}: {str(row.error).splitlines()[0][:300]}"
              for row in table[table["status"] == "ERROR"].itertuples()]
    return SweepOutcome(sweep_dir, results_path, markdown, len(table), num_errors, uri, paths,
                        store.experiment_url(uri, record.experiment), errors)
