"""The Ray Tune function trainable: one offline-MBO trial, recorded in MLflow and reported to Tune.

Per attempt of a trial:

* its MLflow run is found by the tags ``ignite_mbo.trial_id`` (the Tune trial id) and
  ``ignite_mbo.sweep_run_id`` (the sweep's parent run), else created; an earlier attempt's run that
  already has metrics is replaced (see :class:`~ignite_mbo.mlflow_store.TrialRecorder`), so every
  metric is recorded once; metrics stream to MLflow at the end of every epoch;
* a run that already FINISHED (the driver died before Tune recorded the trial) is not run again:
  its summary is reported as the trial's result;
* the trial runs with a :class:`~ignite_mbo.checkpoints.CheckpointStore` active, seeded from the
  Tune checkpoint: surrogates trained by an earlier attempt are restored, each newly trained one is
  saved and reported as a Tune checkpoint;
* a NaN or infinite training loss fails the trial at once: the result carries ``nonfinite_loss``
  (the sweep's callback then disables retries for it) and the MLflow run is FAILED with the reason;
  any other exception is retried by Tune (``failure.max_retries``), from the last checkpoint.

Every result carries ``surrogate_epochs`` (epochs trained so far over all surrogates, the
scheduler's clock) and, when the sweep has an objective, ``objective``.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune

from ignite_mbo.checkpoints import CheckpointStore
from ignite_mbo.config import TrialConfig
from ignite_mbo.mlflow_store import TAG_PREFIX, TrialRecorder
from ignite_mbo.progress import EpochMetrics
from ignite_mbo.tasks import Task
from ignite_mbo.trainables.artifacts import write_trial_artifacts
from ignite_mbo.trainables.objectives import OBJECTIVES, Objective
from ignite_mbo.trainables.params import run_name, trial_config
from ignite_mbo.training import NonFiniteLossError
from ignite_mbo.trial import TrialResult, resolve_device, run_trial

NONFINITE = "nonfinite_loss"
COMPLETED = "trial_completed"  # on the final result only (Tune's own "done" is also set on a stopped trial's last)
logging.getLogger("ray.tune.trainable").setLevel(logging.WARNING)  # set on import in the worker, before Tune
# restores a checkpoint: no "Restored on ... from checkpoint" lines among the sweep's table rows


def shared_task_key(config: TrialConfig) -> str:
    """Tasks are built once per sweep, keyed by id and options, and shared through the object store."""
    options = ",".join(f"{key}={value}" for key, value in sorted(config.task_options.items()))
    return f"{config.task}[{options}]"


def _metric_name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def objective_value(result: TrialResult, objective: Objective) -> float:
    """The trial's final objective: the oracle score, or the mean over its surrogates of the last epoch's metric."""
    if objective.name == "oracle_score":
        return float(result.summary["score_100th"])
    values = [surrogate.history[-1][objective.name] for surrogate in result.proposal.surrogates
              if surrogate.history and objective.name in surrogate.history[-1]]
    return float(np.mean(values)) if values else math.nan


def mbo_trainable(
    params: dict[str, Any], *, tasks: dict[str, Task], tracking_uri: str, experiment: str,
    parent_run_id: str | None, trials: list[TrialConfig], objective: str | None = None,
    numbered_names: bool = False,
) -> None:
    """Run the trial ``params`` describes; report per-epoch surrogate metrics, checkpoints, then the final scores."""
    for name in ("ray.tune", "ray.train"):  # no "Checkpoint successfully created" per epoch in the driver's log
        logging.getLogger(name).setLevel(logging.WARNING)
    context = tune.get_context()
    config = trial_config(params, trials)
    goal = OBJECTIVES[objective] if objective else None
    device = resolve_device("auto")
    trial_id = context.get_trial_id()
    index = trial_id.rsplit("_", 1)[-1] if numbered_names else None
    recorder = TrialRecorder(tracking_uri, experiment, config, parent_run_id=parent_run_id,
                             run_name=run_name(config, index), trial_id=trial_id,
                             tags={f"{TAG_PREFIX}tune_trial_name": context.get_trial_name()})
    clock = {"epochs": 0, "objective": math.nan}

    def stamp(metrics: dict[str, Any]) -> dict[str, Any]:
        metrics["surrogate_epochs"] = clock["epochs"]
        if goal is not None:
            metrics.setdefault("objective", clock["objective"])
        return metrics

    if recorder.previous_status == "FINISHED":
        summary = recorder.finished_summary()
        if summary is not None:
            tune.report(stamp({**summary, "mlflow_run_id": recorder.run_id, COMPLETED: 1,
                               "attempt": recorder.attempt - 1, "recovered_finished_run": 1}))
            return
        recorder.reopen()

    gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]
    recorder.set_tags({f"{TAG_PREFIX}device": str(device), f"{TAG_PREFIX}gpu_ids": ",".join(gpu_ids) or "none",
                       f"{TAG_PREFIX}attempt": recorder.attempt,
                       **({f"{TAG_PREFIX}objective": goal.name, f"{TAG_PREFIX}objective_kind": goal.label}
                          if goal else {})})

    def log(metrics: dict[str, float], step: int) -> None:
        recorder(metrics, step)
        if isinstance(metrics, EpochMetrics):  # one surrogate epoch ended
            clock["epochs"] += 1
            if goal is not None and goal.per_epoch:
                values = [value for key, value in metrics.items() if _metric_name(key) == goal.name]
                if values:
                    clock["objective"] = float(values[0])
            tune.report(stamp({"epoch": step, **{key.replace("/", "."): value for key, value in metrics.items()}}))

    workdir = Path(tempfile.mkdtemp(prefix="ignite_mbo_ckpt_"))
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(str(workdir))

        def persist(reason: str) -> None:
            tune.report(stamp({}), checkpoint=tune.Checkpoint.from_directory(str(workdir)))

        store = CheckpointStore(workdir, on_save=persist)
        try:
            with store.activate():
                result = run_trial(config, task=tasks[shared_task_key(config)], log=store.wrap_log(log), device=str(device))
        except NonFiniteLossError as error:
            reason = f"NonFiniteLossError: {error}"
            recorder.set_tags({f"{TAG_PREFIX}reached": store.progress()})
            recorder.close("FAILED", reason)
            tune.report(stamp({NONFINITE: 1, "error": reason}))  # the sweep's callback: no retry
            raise
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            recorder.set_tags({f"{TAG_PREFIX}reached": store.progress()})
            recorder.close("FAILED", reason)
            try:
                store.save("failed", failure=reason)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
        except SystemExit:  # Tune stopped the trial: the driver records why (a scheduler, or an interruption)
            recorder.set_tags({f"{TAG_PREFIX}reached": store.progress()})
            recorder.close("KILLED")
            raise

        if goal is not None:
            clock["objective"] = objective_value(result, goal)
            result.summary["objective"] = clock["objective"]
        recorder.set_tags({f"{TAG_PREFIX}restored_surrogates": store.restored,
                           f"{TAG_PREFIX}trained_surrogates": store.trained})
        with tempfile.TemporaryDirectory() as folder:
            write_trial_artifacts(result, Path(folder))
            recorder.finish(result.summary, Path(folder))
        final = stamp({**result.summary, "mlflow_run_id": recorder.run_id, COMPLETED: 1,
                       "restored_surrogates": store.restored, "attempt": recorder.attempt})
        tune.report(final)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
