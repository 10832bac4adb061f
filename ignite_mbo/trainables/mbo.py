"""The Ray Tune function trainable: one offline-MBO trial, recorded in MLflow and reported to Tune."""

from __future__ import annotations

from typing import Any

from ray import tune

from ignite_mbo.config import TrialConfig
from ignite_mbo.platform.tracking import TrialRecorder
from ignite_mbo.tasks import Task
from ignite_mbo.trial import run_trial


def task_key(config: TrialConfig) -> str:
    """Tasks are built once per sweep, keyed by id and options, and shared through the object store."""
    options = ",".join(f"{key}={value}" for key, value in sorted(config.task_options.items()))
    return f"{config.task}[{options}]"


def mbo_trainable(
    params: dict[str, Any], *, tasks: dict[str, Task], tracking_uri: str, experiment: str, parent_run_id: str | None
) -> None:
    """Run the trial ``params`` describes; report per-epoch surrogate metrics, then the final scores."""
    config = TrialConfig.parse(params["trial"])
    recorder = TrialRecorder(tracking_uri, experiment, config, parent_run_id=parent_run_id,
                             run_name=tune.get_context().get_trial_name())

    def log(metrics: dict[str, float], step: int) -> None:
        recorder(metrics, step)
        if any(key.endswith("val_loss") for key in metrics):  # one surrogate epoch
            tune.report({"epoch": step, **{key.replace("/", "."): value for key, value in metrics.items()}})

    try:
        result = run_trial(config, task=tasks[task_key(config)], log=log)
    except Exception as error:
        recorder.fail(f"{type(error).__name__}: {error}")
        raise
    recorder.finish(result)
    tune.report({**result.summary, "mlflow_run_id": recorder.run_id, "done": True})
