"""MLflow: one experiment per sweep, a parent run per sweep, one nested run per trial.

Local runs use a sqlite store (MLflow 3 refuses plain ``file:`` stores); clusters point every
trial at the tracking server on the head node (``http://HEAD:5000``).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from ignite_mbo.config import TrialConfig  # noqa: E402
from ignite_mbo.trial import TrialResult  # noqa: E402

TAG_PREFIX = "ignite_mbo."
_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call


def default_tracking_uri(directory: str | os.PathLike[str] = ".") -> str:
    """A sqlite store in ``directory`` (absolute, so Ray workers in other folders find it)."""
    return f"sqlite:///{Path(directory).resolve() / 'mlflow.db'}"


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created if needed.

    With a sqlite store the artifacts go to ``mlartifacts/`` beside the database file (MLflow's
    default would be ``./mlruns`` of whichever process happened to create the experiment).
    """
    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    uri = client.tracking_uri
    location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name).as_uri() if uri.startswith("sqlite:///") else None
    return client.create_experiment(name, artifact_location=location)


class TrialRecorder:
    """Collects a trial's step metrics and writes its MLflow run: params, tags, curves, artifacts.

    Metrics are buffered and written in batches when the trial ends, which keeps concurrent trials
    from contending for a sqlite store's write lock.
    """

    def __init__(self, tracking_uri: str, experiment: str, config: TrialConfig,
                 parent_run_id: str | None = None, run_name: str | None = None, run_id: str | None = None,
                 trial_id: str | None = None) -> None:
        """Open the trial's run: ``run_id``, else the run of sweep trial ``trial_id`` if one exists
        (a retried or resumed trial keeps its run), else a new one.

        ``attempt`` counts the starts of the trial (tag ``ignite_mbo.attempt``); ``previous_status``
        is the status its run had before this start (None for a new run). Metrics reach MLflow only
        when a trial ends, so a run that is not FINISHED but has metrics was interrupted while they
        were written: it is deleted and replaced by a new run, which records every metric once.
        """
        self.client = MlflowClient(tracking_uri)
        self.config = config
        self.metrics: list[Metric] = []
        self.attempt = 1
        self.previous_status: str | None = None
        self._where = (experiment, parent_run_id, run_name, trial_id)
        self._existing_tags: dict[str, str] = {}
        if run_id is None and trial_id is not None and parent_run_id:
            existing = find_trial_run(self.client, experiment, parent_run_id, trial_id)
            if existing is not None:
                self.previous_status = existing.info.status
                self.attempt = int(existing.data.tags.get(f"{TAG_PREFIX}attempt", "1")) + 1
                self._existing_tags = dict(existing.data.tags)
                run_id = existing.info.run_id
                if self.previous_status != "FINISHED":
                    run_id = self._reopen(run_id, bool(existing.data.metrics))
        self.run_id = run_id if run_id is not None else self._create({})

    def _create(self, extra_tags: dict[str, str]) -> str:
        experiment, parent_run_id, run_name, trial_id = self._where
        config = self.config
        tags = {f"{TAG_PREFIX}{key}": str(getattr(config, key)) for key in ("task", "baseline", "seed", "fidelity")}
        tags[f"{TAG_PREFIX}regularizer"] = config.regularizer.name
        tags[f"{TAG_PREFIX}kind"] = "trial"
        tags[f"{TAG_PREFIX}attempt"] = str(self.attempt)
        if trial_id:
            tags[f"{TAG_PREFIX}trial_id"] = trial_id
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(experiment_id(self.client, experiment), run_name=run_name,
                                     tags={**tags, **extra_tags})
        params = [Param(key, str(value)) for key, value in config.flat().items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=params[start:start + 100])
        return run.info.run_id

    def _reopen(self, run_id: str, has_metrics: bool) -> str:
        """This attempt's run for an earlier attempt's ``run_id``: that run RUNNING again, or a replacement."""
        error = self._existing_tags.get(f"{TAG_PREFIX}error")
        carried = {f"{TAG_PREFIX}previous_error": error} if error else {}
        if has_metrics:
            self.client.set_tag(run_id, f"{TAG_PREFIX}replaced", "interrupted while recording; the trial has a newer run")
            self.client.delete_run(run_id)
            return self._create(carried)
        self.client.update_run(run_id, status="RUNNING")
        self.client.log_batch(run_id, tags=[RunTag(key, value) for key, value in
                                            {f"{TAG_PREFIX}attempt": str(self.attempt), **carried}.items()])
        if error:
            self.client.delete_tag(run_id, f"{TAG_PREFIX}error")
        return run_id

    def reopen(self) -> None:
        """Run a FINISHED run's trial again (its summary could not be read back): a replacement run."""
        self.run_id = self._reopen(self.run_id, has_metrics=True)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(key, str(value)[:5000]) for key, value in tags.items()])

    def finished_summary(self) -> dict[str, Any] | None:
        """The summary a FINISHED run recorded (its ``summary.json``), or None."""
        try:
            with tempfile.TemporaryDirectory() as folder:
                path = self.client.download_artifacts(self.run_id, "summary.json", folder)
                return json.loads(Path(path).read_text())
        except Exception:  # noqa: BLE001 - no artifact: the trial runs again
            return None

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        timestamp = int(1000 * pd.Timestamp.now().timestamp())
        self.metrics += [Metric(key.replace("/", "."), float(value), timestamp, step)
                         for key, value in metrics.items() if np.isfinite(value)]

    def flush(self) -> None:
        for start in range(0, len(self.metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=self.metrics[start:start + _BATCH])
        self.metrics = []

    def finish(self, result: TrialResult) -> None:
        """Write the final summary, the candidates, the surrogates and the training plot; close the run."""
        finals = {key: float(value) for key, value in result.summary.items() if isinstance(value, (int, float))}
        self(finals, 0)
        self.flush()
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder)
            candidates_table(result).to_parquet(out / "candidates.parquet", index=False)
            for index, surrogate in enumerate(result.proposal.surrogates):
                torch.save(surrogate.model.state_dict(), out / f"surrogate_{index}.pt")
            (out / "summary.json").write_text(json.dumps(result.summary, indent=2, default=float))
            plot_training(result, out / "training_curves.png")
            self.client.log_artifacts(self.run_id, str(out))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, reason: str, *, flush: bool = True) -> None:
        """Close the run as FAILED with ``reason``. ``flush=False`` drops the buffered metrics (a
        retry resumes from the checkpoint and logs them again, so they are recorded once)."""
        if flush:
            self.flush()
        self.metrics = []
        self.client.set_tag(self.run_id, f"{TAG_PREFIX}error", reason[:5000])
        self.client.set_terminated(self.run_id, "FAILED")


def candidates_table(result: TrialResult) -> pd.DataFrame:
    """The proposed designs (one column per coordinate) with their normalised oracle scores."""
    designs = result.proposal.designs.reshape(len(result.proposal.designs), -1)
    table = pd.DataFrame(designs, columns=[f"x{i}" for i in range(designs.shape[1])])
    table["score_normalized"] = result.scores
    return table


def plot_training(result: TrialResult, path: Path) -> None:
    """λ and measured sharpness per epoch for each regularized model."""
    figure, (ax_lambda, ax_sharp) = plt.subplots(1, 2, figsize=(9, 3.2))
    for index, surrogate in enumerate(result.proposal.surrogates):
        epochs = range(len(surrogate.history))
        ax_lambda.plot(epochs, [m["lambda"] for m in surrogate.history], label=f"model {index}")
        ax_sharp.plot(epochs, [m["sharpness"] for m in surrogate.history], label=f"model {index}")
    ax_lambda.set(xlabel="epoch", ylabel="λ", title="Lagrange multiplier")
    ax_sharp.set(xlabel="epoch", ylabel="ρ‖∇β G‖ (ρ=0.05)", title="surrogate sharpness")
    if len(result.proposal.surrogates) > 1:
        ax_sharp.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    path.write_bytes(buffer.getvalue())


def start_sweep_run(tracking_uri: str, experiment: str, spec: dict[str, Any],
                    tags: dict[str, str] | None = None) -> str:
    """Create the sweep's parent run (trials nest under it in the MLflow UI); returns its id."""
    client = MlflowClient(tracking_uri)
    run = client.create_run(experiment_id(client, experiment), run_name=f"sweep:{experiment}",
                            tags={f"{TAG_PREFIX}kind": "sweep", **(tags or {})})
    client.log_dict(run.info.run_id, spec, "sweep_spec.json")
    return run.info.run_id


def find_trial_run(client: MlflowClient, experiment: str, parent_run_id: str, trial_id: str):  # noqa: ANN201
    """The (non-deleted) run of Tune trial ``trial_id`` under sweep run ``parent_run_id``, or None."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{TAG_PREFIX}trial_id` = '{trial_id}' and tags.`mlflow.parentRunId` = '{parent_run_id}'",
        max_results=10,
    )
    return min(runs, key=lambda run: run.info.start_time) if runs else None


def sweep_trial_runs(client: MlflowClient, experiment: str, parent_run_id: str) -> list:
    """Every non-deleted trial run under sweep run ``parent_run_id``."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`{TAG_PREFIX}kind` = 'trial' and tags.`mlflow.parentRunId` = '{parent_run_id}'",
            max_results=1000, page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def search_trial_runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """The sweep's trial runs as a DataFrame (``mlflow.search_runs``)."""
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.search_runs(experiment_names=[experiment], filter_string=f"tags.`{TAG_PREFIX}kind` = 'trial'")
