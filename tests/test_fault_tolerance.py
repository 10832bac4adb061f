"""Fault tolerance: checkpointed surrogates, retried trials, NaN trials that fail at once, resumed sweeps.

The in-process tests check the checkpoint store on tiny models. The sweeps run on an embedded Ray
(2 CPUs): one injects a trial that raises once (a worker setup hook written to a temporary folder,
no test code in the package) next to one whose loss goes NaN; the other kills a sweep's driver with
SIGKILL mid-sweep and resumes it. Every Ray process these tests start is killed by process group
and by a marker in its environment, even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from ignite_mbo.checkpoints import CheckpointStore
from ignite_mbo.models import GaussianMLP, gaussian_nll
from ignite_mbo.regularizers import build
from ignite_mbo.training import FitSettings, train_surrogate

from processes import kill_marked

# ---- the checkpoint store, in process ------------------------------------------------------------

X = torch.randn(300, 6, generator=torch.Generator().manual_seed(0))
Y = X[:, :1] * 2 + 0.1 * torch.randn(300, 1, generator=torch.Generator().manual_seed(1))
FIT = FitSettings(epochs=3, batch_size=64, learning_rate=1e-2, validation_size=50)


def fit_two(store: CheckpointStore | None, fit: FitSettings = FIT, loss_fn=gaussian_nll) -> dict:
    """Two surrogates in a row (like an ensemble), then a draw from every global RNG."""
    logged: list = []
    results = {"histories": [], "weights": [], "lambdas": []}

    def run() -> None:
        log = store.wrap_log(lambda m, s: logged.append((m, s))) if store else (lambda m, s: logged.append((m, s)))
        for member in range(2):
            torch.manual_seed(member)
            model = GaussianMLP(6, 16, 2)
            regularizer = build("ignite", epsilon=0.01)
            generator = torch.Generator().manual_seed(10 + member)
            history = train_surrogate(model, X, Y, regularizer, fit, generator=generator, loss_fn=loss_fn,
                                      log=log, prefix=f"model_{member}/")
            results["histories"].append(history)
            results["weights"].append({k: v.clone() for k, v in model.state_dict().items()})
            results["lambdas"].append(regularizer.state_dict()["lambda"])
            results.setdefault("generator_draws", []).append(torch.randint(1000, (3,), generator=generator).tolist())
        results["torch_draw"] = torch.rand(3).tolist()

    if store is None:
        run()
    else:
        with store.activate():
            run()
    results["logged"] = logged
    return results


def same(a: dict, b: dict) -> bool:
    weights = all(torch.equal(wa[k], wb[k]) for wa, wb in zip(a["weights"], b["weights"]) for k in wa)
    rest = all(a[key] == b[key] for key in ("histories", "lambdas", "generator_draws", "torch_draw", "logged"))
    return weights and rest


def test_restored_surrogates_equal_trained_ones_and_log_the_same_metrics_once(tmp_path):
    reference = fit_two(None)
    first = CheckpointStore(tmp_path, on_save=lambda reason: saves.append(reason))
    saves: list[str] = []
    assert same(fit_two(first), reference) and first.trained == 2 and first.restored == 0
    assert saves == ["surrogate_0 trained", "surrogate_1 trained"]
    second = CheckpointStore(tmp_path)  # a retry: a fresh store on the same folder
    assert same(fit_two(second), reference), "restored weights, λ, history, RNG states and logged metrics"
    assert second.restored == 2 and second.trained == 0


def test_half_done_attempt_restores_the_first_surrogate_and_trains_the_second(tmp_path):
    reference = fit_two(None)
    store = CheckpointStore(tmp_path)
    fit_two(store)
    state = json.loads((tmp_path / "state.json").read_text())
    del state["surrogates"]["surrogate_1"]
    (tmp_path / "state.json").write_text(json.dumps(state))
    retry = CheckpointStore(tmp_path)
    assert same(fit_two(retry), reference) and (retry.restored, retry.trained) == (1, 1)


def test_a_changed_call_is_trained_again(tmp_path):
    fit_two(CheckpointStore(tmp_path))
    changed = FitSettings(epochs=2, batch_size=64, learning_rate=1e-2, validation_size=50)
    retry = CheckpointStore(tmp_path)
    result = fit_two(retry, fit=changed)
    assert (retry.restored, retry.trained) == (0, 2) and len(result["histories"][0]) == 2


def test_a_stateful_loss_without_state_dict_is_trained_again(tmp_path):
    class Scaled:  # like COMs' loss: state the store cannot save
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, model, x, y):
            self.calls += 1
            return gaussian_nll(model, x, y)

    fit_two(CheckpointStore(tmp_path), loss_fn=Scaled())
    retry = CheckpointStore(tmp_path)
    fit_two(retry, loss_fn=Scaled())
    assert (retry.restored, retry.trained) == (0, 2)


# ---- one MLflow run per trial, across attempts -----------------------------------------------------

def test_a_trial_has_one_live_run_across_attempts_and_its_curves_stream(tmp_path):
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.mlflow_store import TrialRecorder, start_sweep_run, sweep_trial_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = start_sweep_run(uri, "attempts", "sweep:attempts", {"name": "attempts"})
    config = TrialConfig.parse({"regularizer": {"name": "ignite"}})

    def attempt(trial_id: str = "t1") -> TrialRecorder:
        return TrialRecorder(uri, "attempts", config, parent_run_id=parent, run_name="t", trial_id=trial_id)

    first = attempt()
    first.close("FAILED", "RuntimeError: before any epoch")  # failed before it logged anything
    second = attempt()
    assert second.run_id == first.run_id and second.attempt == 2 and second.previous_status == "FAILED"
    run = second.client.get_run(second.run_id)
    assert run.info.status == "RUNNING" and run.data.metrics == {}
    assert run.data.tags["ignite_mbo.previous_error"] == "RuntimeError: before any epoch"
    assert "ignite_mbo.error" not in run.data.tags

    second({"model_0/val_loss": 1.0, "model_0/lambda": 0.5}, 0)  # an epoch ends: it reaches MLflow at once
    assert [m.value for m in second.client.get_metric_history(second.run_id, "model_0.lambda")] == [0.5]
    second.close("FAILED", "RuntimeError: boom")
    third = attempt()  # the retry logs the restored epoch again: a fresh run, so no metric twice
    assert third.run_id != second.run_id and third.attempt == 3
    assert third.client.get_run(third.run_id).data.tags["ignite_mbo.previous_error"] == "RuntimeError: boom"
    live = sweep_trial_runs(uri, "attempts", parent)
    assert [r.info.run_id for r in live] == [third.run_id]
    assert third.client.get_run(second.run_id).info.lifecycle_stage == "deleted"
    third({"model_0/val_loss": 0.5}, 0)
    third.client.set_terminated(third.run_id, "FINISHED")
    fourth = attempt()  # e.g. a resumed sweep that had not recorded the trial as done
    assert fourth.run_id == third.run_id and fourth.previous_status == "FINISHED"
    assert attempt("t2").run_id not in {r.info.run_id for r in live}


def test_concurrent_experiment_creation_is_safe(tmp_path):
    """Two processes creating the same experiment at once both get its id (no "already exists")."""
    script = (
        "import sys; from mlflow.tracking import MlflowClient; from ignite_mbo.mlflow_store import experiment_id; "
        "print(experiment_id(MlflowClient(sys.argv[1]), 'race'))"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # create the tables first, as any earlier use would
    racers = [subprocess.Popen([sys.executable, "-c", script, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(4)]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err[-500:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    experiment = MlflowClient(uri).get_experiment_by_name("race")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


# ---- sweeps on an embedded Ray -------------------------------------------------------------------

HOOK = '''
import os
from pathlib import Path


def install():
    """Make the first gradient-ascent search of the sweep raise once (after its surrogate trained)."""
    import ignite_mbo.baselines.grad_ascent as module

    original, marker = module.gradient_ascent, Path(os.environ["IGNITE_TEST_FAIL_ONCE"])

    def flaky(*args, **kwargs):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return original(*args, **kwargs)
        raise RuntimeError("injected failure after the surrogate was trained")

    module.gradient_ascent = flaky
'''

FAULTS = """
name: faults
trial:
  task: TFBind8-Exact-v0
  baseline: grad-ascent
  fidelity: quick
  regularizer: ignite
  baseline_options: {hidden_size: 32, epochs: 1, batch_size: 2048, solver_steps: 20}
variants:
  - {seed: [0, 1]}
  - {seed: [2], baseline_options.learning_rate: [1.0e+10]}   # the loss goes NaN in the first epoch
failure: {max_retries: 2}
resources: {cpu: 1, gpu: 0}
"""


@pytest.fixture
def ray_with_fault_hook(tmp_path):
    import ray

    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "ignite_fault_hook.py").write_text(HOOK)
    marker = tmp_path / "failed_once"
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"PYTHONPATH": str(hook_dir), "IGNITE_TEST_FAIL_ONCE": str(marker)},
                          "worker_process_setup_hook": "ignite_fault_hook.install"})
    try:
        yield marker
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_raising_trial_is_retried_from_its_checkpoint_and_nan_trial_fails_at_once(
    ray_with_fault_hook, tmp_path, design_bench_dir
):
    from ignite_mbo.platform.sweep import run_sweep

    (tmp_path / "faults.yaml").write_text(FAULTS)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = run_sweep(tmp_path / "faults.yaml", tracking_uri=uri, output_dir=tmp_path / "out",
                        data_dir=str(design_bench_dir))
    assert ray_with_fault_hook.exists(), "the injected failure happened"
    table = pd.read_parquet(outcome.results_path).set_index("seed")
    assert outcome.num_trials == 3 and outcome.num_errors == 1
    assert table.loc[2, "status"] == "ERROR"
    assert table.loc[2, "error"].startswith("NonFiniteLossError: training loss became nan at epoch 0")
    finished = table.loc[[0, 1]]
    assert set(finished["status"]) == {"TERMINATED"} and finished["score_100th"].notna().all()
    retried = finished[finished["attempt"] == 2]
    assert len(retried) == 1, "exactly one trial hit the injected failure and was retried"
    assert retried["restored_surrogates"].iloc[0] == 1, "the retry restored its trained surrogate"
    assert (finished[finished["attempt"] == 1]["restored_surrogates"] == 0).all()

    client = MlflowClient(uri)
    runs = {run.data.tags["ignite_mbo.seed"]: run for run in client.search_runs(
        [client.get_experiment_by_name("faults").experiment_id], "tags.`ignite_mbo.kind` = 'trial'")}
    assert sorted(runs) == ["0", "1", "2"], "one MLflow run per trial, retries included"
    nan_run = runs["2"]
    assert nan_run.info.status == "FAILED" and nan_run.data.tags["ignite_mbo.attempt"] == "1", "not retried"
    assert nan_run.data.tags["ignite_mbo.error"].startswith("NonFiniteLossError")
    retried_run = runs[str(retried.index[0])]
    assert retried_run.info.status == "FINISHED" and retried_run.data.tags["ignite_mbo.attempt"] == "2"
    assert retried_run.data.tags["ignite_mbo.previous_error"].startswith("RuntimeError: injected failure")
    assert "ignite_mbo.error" not in retried_run.data.tags
    assert [m.step for m in client.get_metric_history(retried_run.info.run_id, "lambda")] == [0], \
        "the restored epoch's metrics are recorded once"
    for seed in ("0", "1", "2"):
        assert runs[seed].info.run_id == table.loc[int(seed), "mlflow_run_id"]


SMALL = """
name: resumable
trial:
  task: TFBind8-Exact-v0
  baseline: grad-ascent
  fidelity: quick
  baseline_options: {hidden_size: 32, epochs: 2, batch_size: 2048, solver_steps: 20}
grid:
  regularizer: [none, ignite]
  seed: [0, 1, 2]
resources: {cpu: 1, gpu: 0}
"""


def finished_trials(db: Path) -> int:
    """FINISHED trial runs, read straight from the sqlite file (fast enough to poll)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as connection:
            return connection.execute(
                "select count(*) from runs r join tags t on r.run_uuid = t.run_uuid where t.key = 'ignite_mbo.kind' "
                "and t.value = 'trial' and r.status = 'FINISHED' and r.lifecycle_stage = 'active'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or busy
        return 0


def trial_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(client.search_runs([found.experiment_id], "tags.`ignite_mbo.kind` = 'trial'"))


@pytest.mark.slow
def test_sweep_whose_driver_is_killed_resumes_with_every_trial_once(tmp_path, design_bench_dir):
    (tmp_path / "space.yaml").write_text(SMALL)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ray_tmp = tempfile.mkdtemp(prefix="rr", dir="/tmp")  # short: Ray's unix sockets live under it
    env = {**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir), "RAY_TMPDIR": ray_tmp}
    command = [sys.executable, "-m", "ignite_mbo.cli", "sweep", "space.yaml", "--tracking-uri", uri,
               "--output-dir", "out", "--num-cpus", "2"]
    logs = tmp_path / "first.log"
    try:
        with logs.open("w") as log:
            driver = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + 400
        while not finished_trials(tmp_path / "mlflow.db"):
            assert driver.poll() is None, logs.read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started, mid-sweep
        driver.wait(timeout=60)
        kill_marked("RAY_TMPDIR", ray_tmp)
        sweep_dir = tmp_path / "out" / "resumable"
        assert not (sweep_dir / "results.parquet").exists(), "the sweep was interrupted"
        interrupted = trial_runs(uri, "resumable")
        assert any(run.info.status == "FINISHED" for run in interrupted)

        resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=600, start_new_session=True)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    finally:
        kill_marked("RAY_TMPDIR", ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    table = pd.read_parquet(sweep_dir / "results.parquet")
    print(table[["trial_id", "regularizer", "seed", "attempt", "restored_surrogates"]].to_string())
    print({run.data.tags["ignite_mbo.trial_id"]: run.info.status for run in interrupted})
    assert len(table) == 6 and table["trial_id"].is_unique and set(table["status"]) == {"TERMINATED"}
    assert sorted(zip(table["regularizer"], table["seed"])) == [(r, s) for r in ("ignite", "none") for s in (0, 1, 2)]
    runs = trial_runs(uri, "resumable")
    assert len(runs) == 6, [(r.data.tags.get("ignite_mbo.trial_id"), r.info.status) for r in runs]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert {run.info.run_id for run in runs} == set(table["mlflow_run_id"])
    assert len({run.data.tags["ignite_mbo.trial_id"] for run in runs}) == 6
    finished_before = {run.info.run_id for run in interrupted if run.info.status == "FINISHED"}
    assert finished_before <= set(table["mlflow_run_id"]), "finished trials kept their runs"
    for run in runs:  # one point per epoch, whichever attempt logged it
        steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "val_loss")]
        assert steps == [0, 1], (run.data.tags["ignite_mbo.trial_id"], steps)
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    parent = MlflowClient(uri).get_run(meta["parent_run_id"])
    assert parent.data.tags["ignite_mbo.resumed"] == "1" and parent.info.status == "FINISHED"
    assert "### 100th percentile" in resumed.stdout
