"""Every MLflow call of ignite-mbo: one experiment per search space, a parent run per sweep, a run per trial.

Local runs use a sqlite store (MLflow 3 refuses ``file:`` stores), artifacts in ``mlartifacts/`` beside it;
clusters use the head's tracking server (``http://HEAD:5000``). Experiments are model-training ones (runs table).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from ignite_mbo import mlflow_ui as ui
from ignite_mbo import store_guard
from ignite_mbo.errors import UserError
from ignite_mbo.progress import EpochMetrics
from ignite_mbo.protocol import PROTOCOL_DEVIATIONS
from ignite_mbo.retries import LOCKED_NOTE, said_if_slow
from ignite_mbo.retries import wait_out_lock as _retry
from ignite_mbo.run_closing import closed_if_it_fails, closing
from ignite_mbo.store_guard import sqlite_path

TAG_PREFIX = "ignite_mbo."
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
"""The value of ``mlflow.experimentKind`` for which MLflow 3's UI shows the runs table (its "Model training" view)."""
SWEEP_RUN_TAG = "ignite_mbo.sweep_run_id"
"""A trial run's sweep (its parent run's id; also ``mlflow.parentRunId``, see ``ignite_mbo.mlflow_ui``)."""
_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call
_STREAM_EVERY_S = 5.0  # buffered metrics reach MLflow at least this often, and at every epoch's end


# ---- the client (tracking URIs are checked in store_guard, which needs no MLflow) ----------------

def _client(uri: str) -> Any:
    import logging

    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." and the like
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # its SQL tracebacks: ours is one line
    for quiet in ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        os.environ.setdefault(quiet, "true" if "SUPPRESS" in quiet else "false")  # no "View run" lines, no bars
    store_guard.bound_http_calls(__import__("mlflow.utils.rest_utils", fromlist=["rest_utils"]))  # + a deadline
    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(uri)
    note = LOCKED_NOTE if path.is_file() and path.stat().st_size else ""  # building a new schema takes seconds
    with store_guard.creating_store(path), said_if_slow(note):  # the schema is built (once per process) under the lock
        client = _retry(lambda: MlflowClient(uri))  # it opens the store: reads the schema, or builds it
        client._tracking_client.store  # noqa: B018
    return client


def _answered_id(value: object, what: str, client: Any) -> str:
    """The id the tracking server gave ``what``; an empty one (a server that answers ``{}`` to everything) is a
    one-line error: no MLflow server does that."""
    if not str(value or ""):
        raise UserError(f"the tracking server at {store_guard.mask(client.tracking_uri)} answered {what} without "
                        "an id, as no MLflow server does; check that --tracking-uri is an MLflow server's URL")
    return str(value)


# ---- experiments --------------------------------------------------------------------------------

def experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name``, created if needed, safe when processes race to create or tag it. With a sqlite
    store its artifacts go to ``mlartifacts/`` beside the database file. It is tagged as a model-training experiment
    (the runs view in the MLflow UI), with the shared view the printed link opens."""
    from mlflow.exceptions import MlflowException

    tags = {EXPERIMENT_KIND_TAG: MODEL_TRAINING, ui.SHARED_VIEW_TAG: ui.shared_view()}
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        path = sqlite_path(client.tracking_uri)
        location = (path.parent / store_guard.ARTIFACTS_FOLDER / name).as_uri() if path else None
        try:
            return str(_retry(lambda: client.create_experiment(name, artifact_location=location, tags=tags)))
        except MlflowException as error:
            if "already exists" not in str(error) and "UNIQUE constraint" not in str(error):
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise UserError(f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore "
                        f"--experiment-id {experiment.experiment_id}) or rename the space")
    for key in (key for key, value in tags.items() if experiment.tags.get(key) != value):
        try:
            _retry(partial(client.set_experiment_tag, experiment.experiment_id, key, tags[key]))
        except MlflowException as error:  # another process tagged it at the same moment
            if "UNIQUE constraint" not in str(error):
                raise
    return _answered_id(experiment.experiment_id, f"experiment {name!r}", client)


# ---- runs ---------------------------------------------------------------------------------------

def close_run(uri: str, run_id: str, status: str, reason: str | None = None, *, tag: str = "error") -> None:
    """End run ``run_id`` as FINISHED, FAILED or KILLED; ``reason`` goes to tag ``ignite_mbo.<tag>``. A store
    that fails gets a few tries (:func:`run_closing.closing`); still failing, a one-line UserError."""
    def attempt() -> None:
        client = _client(uri)
        if reason:
            _retry(lambda: client.set_tag(run_id, f"{TAG_PREFIX}{tag}", store_guard.mask(reason)[:5000]))
        _retry(lambda: client.set_terminated(run_id, status))

    closing(attempt, f"its MLflow run {run_id}", status, "once the tracking store works, run the sweep again with --resume, "
             "which closes its runs")


def experiment_url(uri: str, experiment: str, server: str = "http://127.0.0.1:5000") -> str:
    """The page of ``experiment``'s runs in the MLflow UI at ``server`` (its "Model training" view)."""
    found = _client(uri).get_experiment_by_name(experiment)
    where = f"/#/experiments/{found.experiment_id}/runs" if found is not None else "/"
    view = f"&viewStateShareKey={ui.SHARED_VIEW_KEY}" if found is not None else ""
    return f"{server.rstrip('/')}{where}?workflowType=machine_learning{view}"


def is_sweep_run(uri: str, run_id: str, experiment: str) -> bool:
    """Whether ``run_id`` is a sweep's run (not a trial's, not deleted) in ``experiment`` of the store at ``uri``."""
    from mlflow.exceptions import MlflowException

    try:
        run = (client := _client(uri)).get_run(run_id)
        return (run.info.lifecycle_stage == "active" and run.data.tags.get(f"{TAG_PREFIX}kind") == "sweep"
                and client.get_experiment(run.info.experiment_id).name == experiment)
    except MlflowException:
        return False


def set_run_tags(uri: str, run_id: str, tags: dict[str, Any], client: Any = None) -> None:
    from mlflow.entities import RunTag
    _retry(lambda: (client or _client(uri)).log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()]))


def log_run_metric(uri: str, run_id: str, key: str, value: float) -> None:
    _retry(partial(_client(uri).log_metric, run_id, key, value))


def log_files(uri: str, run_id: str, paths: Iterable[Path], artifact_path: str) -> None:
    """Log files under ``artifact_path`` of the run; a file of the same name there is replaced."""
    client = _client(uri)
    for path in paths:
        _retry(partial(client.log_artifact, run_id, str(path), artifact_path=artifact_path))


class TrialRecorder:
    """A trial's MLflow run: params, tags, curves streamed while it trains, final metrics, artifacts.

    Metrics are buffered and written in one batch at the end of every surrogate epoch (and at least every few seconds
    during a search), so the UI shows the curves while a trial runs and concurrent trials write to a sqlite store rarely.
    """

    def __init__(self, tracking_uri: str, experiment: str, config: Any,
                 parent_run_id: str | None = None, run_name: str | None = None, run_id: str | None = None,
                 trial_id: str | None = None, tags: dict[str, str] | None = None) -> None:
        """Open the trial's run: ``run_id``, else the run of sweep trial ``trial_id`` if one exists
        (a retried or resumed trial keeps its run), else a new one.

        ``attempt`` counts the trial's starts (tag ``ignite_mbo.attempt``); ``previous_status`` is its run's status
        before this start (None for a new run). An earlier attempt's run that is not FINISHED and has metrics is
        replaced by a new run: the retry logs its restored epochs again, and every metric is recorded once.
        """
        self.client = _client(tracking_uri)
        self.config = config
        self.metrics: list[Any] = []
        self.attempt = 1
        self.previous_status: str | None = None
        self._last_flush = time.monotonic()
        self._where = (experiment, parent_run_id, run_name, trial_id, dict(tags or {}))
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
        from mlflow.entities import Param

        experiment, parent_run_id, run_name, trial_id, given = self._where
        config = self.config
        tags = {f"{TAG_PREFIX}{key}": str(getattr(config, key)) for key in ("task", "baseline", "seed", "fidelity")}
        tags[f"{TAG_PREFIX}regularizer"] = config.regularizer.name
        tags[f"{TAG_PREFIX}kind"] = "trial"
        tags[f"{TAG_PREFIX}attempt"] = str(self.attempt)
        if trial_id:
            tags[f"{TAG_PREFIX}trial_id"] = trial_id
        if parent_run_id:  # nested under the sweep's run, grouped by its name
            parent = _retry(lambda: self.client.get_run(parent_run_id))
            tags.update({SWEEP_RUN_TAG: parent_run_id, ui.PARENT_TAG: parent_run_id,
                         ui.SWEEP_TAG: parent.data.tags.get(ui.SWEEP_TAG, ui.sweep_name(parent.info.run_name))})
        exp_id = experiment_id(self.client, experiment)
        from ignite_mbo.provenance import trial_record

        record = trial_record(config)
        tags.update(record["tags"])
        run = _retry(lambda: self.client.create_run(exp_id, run_name=run_name, tags={**tags, **given, **extra_tags}))
        run_id = _answered_id(run.info.run_id, "a new run", self.client)
        params = [Param(key, str(value)) for key, value in record["params"].items()]
        with closed_if_it_fails(partial(close_run, self.client.tracking_uri, run_id)):
            for start in range(0, len(params), 100):
                _retry(partial(self.client.log_batch, run_id, params=params[start:start + 100]))
        return run_id

    def _reopen(self, run_id: str, has_metrics: bool) -> str:
        """This attempt's run for an earlier attempt's ``run_id``: that run RUNNING again, or a replacement."""
        error = self._existing_tags.get(f"{TAG_PREFIX}error")
        carried = {f"{TAG_PREFIX}previous_error": error} if error else {}
        if has_metrics:
            _retry(lambda: self.client.set_tag(run_id, f"{TAG_PREFIX}replaced", "the trial ran again; see its newer run"))
            _retry(lambda: self.client.delete_run(run_id))
            return self._create(carried)
        _retry(lambda: self.client.update_run(run_id, status="RUNNING"))
        self.set_tags({f"{TAG_PREFIX}attempt": str(self.attempt), **carried}, run_id=run_id)
        for ended in ("error", "interrupted", "stopped"):  # this attempt has not ended
            if f"{TAG_PREFIX}{ended}" in self._existing_tags:
                _retry(partial(self.client.delete_tag, run_id, f"{TAG_PREFIX}{ended}"))
        return run_id

    def reopen(self) -> None:
        """Run a FINISHED run's trial again (its summary could not be read back): a replacement run."""
        self.run_id = self._reopen(self.run_id, has_metrics=True)

    def set_tags(self, tags: dict[str, Any], run_id: str | None = None) -> None:
        set_run_tags(self.client.tracking_uri, run_id or self.run_id, tags, self.client)  # no new client per call

    def finished_summary(self) -> dict[str, Any] | None:
        """The summary a FINISHED run recorded (its ``summary.json``), or None."""
        try:
            with tempfile.TemporaryDirectory() as folder:
                path = self.client.download_artifacts(self.run_id, "summary.json", folder)
                loaded = json.loads(Path(path).read_text())
                if not isinstance(loaded, dict):
                    return None
                return {key: value for key, value in loaded.items() if key not in ("params", "tags")}
        except Exception:  # noqa: BLE001 - no artifact: the trial runs again
            return None

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        """Buffer ``metrics`` at ``step``; write the buffer at an epoch's end or every few seconds."""
        import math

        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        self.metrics += [Metric(key, float(value), timestamp, step)  # "surrogate/lambda": a section of its own
                         for key, value in metrics.items() if math.isfinite(float(value))]
        epoch_done = isinstance(metrics, EpochMetrics)
        if epoch_done or time.monotonic() - self._last_flush > _STREAM_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Write every buffered metric."""
        pending, self.metrics = self.metrics, []
        for start in range(0, len(pending), _BATCH):
            _retry(partial(self.client.log_batch, self.run_id, metrics=pending[start:start + _BATCH]))
        self._last_flush = time.monotonic()

    def finish(self, summary: dict[str, Any], artifacts: Path) -> None:
        """Log the final summary (metrics and ``summary.json``) and the files in ``artifacts``; close FINISHED."""
        finals = {key: float(value) for key, value in summary.items()
                  if isinstance(value, (int, float)) and not isinstance(value, bool)}
        self(finals, 0)
        self.flush()
        if PROTOCOL_DEVIATIONS in summary:
            self.set_tags({f"{TAG_PREFIX}{PROTOCOL_DEVIATIONS}": summary[PROTOCOL_DEVIATIONS] or "none"})
        from ignite_mbo.provenance import trial_record

        record = {**summary, **trial_record(self.config)}  # reproducible from the record: ignite-mbo rerun
        (artifacts / "summary.json").write_text(json.dumps(record, indent=2, default=float))
        try:
            _retry(lambda: self.client.log_artifacts(self.run_id, str(artifacts)))
        except OSError:  # a full disk: the run ends FAILED, without the files copied so far (pass 30: a torn .pt)
            self._take_back(artifacts)
            raise
        _retry(lambda: self.client.set_terminated(self.run_id, "FINISHED"))

    def _take_back(self, artifacts: Path) -> None:
        """Remove from a local artifact store every file of ``artifacts`` that was being copied to it."""
        from mlflow.utils.file_utils import local_file_uri_to_path
        from mlflow.utils.uri import is_local_uri

        with contextlib.suppress(Exception):  # best effort: the error being raised is the one to report
            uri = self.client.get_run(self.run_id).info.artifact_uri
            if is_local_uri(uri, is_tracking_or_registry_uri=False):
                root = Path(local_file_uri_to_path(uri))
                for source in (path for path in artifacts.rglob("*") if path.is_file()):
                    (root / source.relative_to(artifacts)).unlink(missing_ok=True)

    def close(self, status: str, reason: str | None = None, *, tag: str = "error") -> None:
        """Write the buffered metrics; close the run as FAILED or KILLED, ``reason`` in tag ``ignite_mbo.<tag>``.
        A store that fails gets a few tries (:func:`run_closing.closing`); still failing, a one-line UserError."""
        def attempt() -> None:
            self.flush()
            if reason:
                _retry(lambda: self.client.set_tag(self.run_id, f"{TAG_PREFIX}{tag}", store_guard.mask(reason)[:5000]))
            _retry(lambda: self.client.set_terminated(self.run_id, status))

        closing(attempt, f"its MLflow run {self.run_id}", status,
                 f"mark it later with MlflowClient(TRACKING_URI).set_terminated('{self.run_id}', '{status}')")


def run_record(uri: str, run_id: str) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    """The params, tags and latest metrics of run ``run_id``; a one-line UserError if there is none."""
    try:
        run = _client(uri).get_run(run_id)
    except Exception:  # noqa: BLE001 - MlflowException: no such run
        raise UserError(f"no run {run_id!r} in {uri}; pass a trial run's id and its --tracking-uri") from None
    return dict(run.data.params), dict(run.data.tags), dict(run.data.metrics)


def find_trial_run(client: Any, experiment: str, parent_run_id: str, trial_id: str) -> Any:
    """The (non-deleted) run of Tune trial ``trial_id`` under sweep run ``parent_run_id``, or None."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{TAG_PREFIX}trial_id` = '{trial_id}' and tags.`{SWEEP_RUN_TAG}` = '{parent_run_id}'",
        max_results=10,
    )
    return min(runs, key=lambda run: run.info.start_time) if runs else None


# ---- sweeps -------------------------------------------------------------------------------------

def start_sweep_run(tracking_uri: str, experiment: str, run_name: str, spec: dict[str, Any],
                    tags: dict[str, str] | None = None) -> str:
    """Create the sweep's parent run (trials nest under it in the MLflow UI); returns its id."""
    client = _client(tracking_uri)
    exp_id = experiment_id(client, experiment)
    run = _retry(lambda: client.create_run(exp_id, run_name=run_name, tags={
        f"{TAG_PREFIX}kind": "sweep", ui.SWEEP_TAG: ui.sweep_name(run_name), **(tags or {})}))
    run_id = _answered_id(run.info.run_id, "a new run", client)
    with closed_if_it_fails(partial(close_run, tracking_uri, run_id)):
        _retry(lambda: client.log_dict(run_id, spec, "sweep_spec.json"))
    return run_id


def reopen_sweep_run(tracking_uri: str, run_id: str) -> int:
    """Mark a sweep's parent run RUNNING again for ``--resume``; returns how many times it was resumed. How it last
    ended (tag ``error`` or ``interrupted``) moves to ``ended_before_resume_<N>``: its tags tell this attempt's end."""
    client = _client(tracking_uri)
    _retry(lambda: client.update_run(run_id, status="RUNNING"))
    tags = client.get_run(run_id).data.tags
    resumes = int(tags.get(f"{TAG_PREFIX}resumed", "0")) + 1
    ended = [key for key in (f"{TAG_PREFIX}error", f"{TAG_PREFIX}interrupted") if key in tags]
    moved = {f"{TAG_PREFIX}ended_before_resume_{resumes}": "; ".join(tags[key] for key in ended)} if ended else {}
    set_run_tags(tracking_uri, run_id, {f"{TAG_PREFIX}resumed": resumes, **moved})
    for key in ended:
        _retry(partial(client.delete_tag, run_id, key))
    return resumes


def sweep_trial_runs(tracking_uri: str, experiment: str, parent_run_id: str) -> list[Any]:
    """Every non-deleted trial run under sweep run ``parent_run_id``."""
    client = _client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs: list[Any] = []
    token = None
    while True:
        where = f"tags.`{TAG_PREFIX}kind` = 'trial' and tags.`{SWEEP_RUN_TAG}` = '{parent_run_id}'"
        page = client.search_runs([found.experiment_id], filter_string=where, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def delete_run(tracking_uri: str, run_id: str, reason: str) -> None:
    client = _client(tracking_uri)
    _retry(lambda: client.set_tag(run_id, f"{TAG_PREFIX}orphan", reason))
    _retry(lambda: client.delete_run(run_id))


def metric_histories(uri: str, run_id: str, names: Iterable[str]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of each metric of ``run_id`` whose last part is in ``names``; {} if the store lacks the run."""
    client, wanted = _client(uri), set(names)
    try:
        metrics = _retry(lambda: client.get_run(run_id)).data.metrics
    except Exception:  # noqa: BLE001 - MlflowException: no such run (deleted, another store)
        return {}
    keys = [key for key in metrics if key.replace("/", ".").rsplit(".", 1)[-1] in wanted]
    return {key: [(m.step, m.value) for m in _retry(partial(client.get_metric_history, run_id, key))] for key in keys}
