"""Finishing a sweep: one results row per Tune trial, MLflow made to agree with Tune, the table and report written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ignite_mbo import mlflow_store as store
from ignite_mbo.config import TrialConfig
from ignite_mbo.platform.record import RESULTS_FILE, SweepRecord
from ignite_mbo.platform.report.sweep_report import report_sweep
from ignite_mbo.platform.results import results_table, write_table
from ignite_mbo.platform.resume_files import says_passing
from ignite_mbo.platform.spaces import OBJECTIVES, SweepSpec
from ignite_mbo.platform.tuner import TrialNamer
from ignite_mbo.trainables.mbo import COMPLETED, NONFINITE
from ignite_mbo.trainables.params import TrialLookup


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
    failure: str | None = None
    """When trials failed: how many, and what to do (``--resume`` runs them again if they failed for a passing
    reason, :func:`says_passing`; else where their tracebacks are)."""


@dataclass
class _Trial:
    """What ``results_table`` reads from a Tune result, with its trial config."""

    config: TrialConfig
    metrics: dict[str, Any]
    error: BaseException | None
    path: str


def collect_results(results: Any, lookup: TrialLookup, spec: SweepSpec) -> pd.DataFrame:
    """One row per Tune trial: ``results_table`` plus the objective, attempts, and clean statuses.

    Status is TERMINATED (finished), ERROR (raised, retries spent, or a non-finite loss), or
    STOPPED (ended early by a scheduler, no final scores).
    """
    trials, extra = [], {}
    namer = TrialNamer(lookup)
    configs = _trial_configs(results)
    for result in results:
        config = result.config if isinstance(result.config, dict) else configs.get(result.path)
        if not isinstance(config, dict):  # a trial Tune restored without its config (state saved on a full disk):
            continue                      # left out, and the sweep's trial count says so
        metrics = dict(result.metrics or {})
        if "trial_id" not in metrics:  # a trial that never reported: its id is in its folder's name
            metrics["trial_id"] = Path(result.path).name.removeprefix(namer.prefix(config))
        trial_id = metrics["trial_id"]
        trials.append(_Trial(lookup(config), metrics, result.error, result.path))
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


def _trial_configs(results: Any) -> dict[str, Any]:
    """Each Tune trial's config by its folder. A ``Result``'s config comes from the trial's last report, so a trial
    that failed before it reported (its MLflow run could not be made) has none there; Tune's trial holds it."""
    analysis = getattr(results, "_experiment_analysis", None)  # Ray 2.60's ResultGrid; a plain list has none
    return {trial.path: trial.config for trial in getattr(analysis, "trials", None) or []}


def reconcile_mlflow(record: SweepRecord, table: pd.DataFrame) -> dict[str, Any]:
    """Make MLflow agree with the finished Tune run: one live run per trial, statuses that match.

    Runs of trials Tune does not know (created by an attempt the driver lost before saving its
    state, whose trial was regenerated under a new id) are deleted; an errored or stopped trial's
    run is closed FAILED / KILLED with its reason (FAILED also when an attempt after a stop failed before it
    could open the run). Fills ``mlflow_run_id``.
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
        if row.status == "ERROR" and run.info.status in ("RUNNING", "KILLED"):  # KILLED: left by an earlier stop
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


def finish_sweep(sweep_dir: Path, table: pd.DataFrame, record: SweepRecord, resume_hint: str) -> SweepOutcome:
    """Reconcile MLflow, write the results table and the report next to it (and into MLflow). ``resume_hint``
    (how to finish the sweep) ends the failure line when trials failed for a passing reason."""
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
    failure = None
    if any(says_passing(line) for line in errors):
        failure = (f"{num_errors} of {len(table)} trials failed for a passing reason (listed above: a full disk, or a "
                   f"store locked for minutes); once it is fixed, {resume_hint}")
    elif errors:
        failure = (f"{num_errors} of {len(table)} trials failed (listed above); each one's traceback is in error.txt "
                   f"in its trial folder under {record.experiment_path}")
    return SweepOutcome(sweep_dir, results_path, markdown, len(table), num_errors, uri, paths,
                        store.experiment_url(uri, record.experiment), errors, failure)
