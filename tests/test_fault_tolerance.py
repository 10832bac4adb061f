"""Fault tolerance: checkpointed surrogates, retried trials, NaN trials that fail at once, resumed sweeps.

The sweeps run on an embedded Ray
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
from mlflow.tracking import MlflowClient

from processes import kill_marked, marked, metrics_logged, start_run, tmpfs

# ---- one MLflow run per trial, across attempts -----------------------------------------------------

def test_a_trial_has_one_live_run_across_attempts_and_its_curves_stream(tmp_path):
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.mlflow_store import TrialRecorder, start_sweep_run, sweep_trial_runs
    from ignite_mbo.progress import EpochMetrics

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

    second(EpochMetrics({"model_0/val_loss": 1.0, "model_0/lambda": 0.5}), 0)  # an epoch ends: it reaches MLflow at once
    assert [m.value for m in second.client.get_metric_history(second.run_id, "model_0/lambda")] == [0.5]
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
  - {seed: [2], baseline_options.learning_rate: [1000.0]}   # the loss goes non-finite in the first epoch
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
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook_dir), os.environ.get("PYTHONPATH")])),
                                       "IGNITE_TEST_FAIL_ONCE": str(marker)},
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
    assert table.loc[2, "error"].startswith("NonFiniteLossError: surrogate/training loss became non-finite in epoch 0")
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
    assert [m.step for m in client.get_metric_history(retried_run.info.run_id, "surrogate/lambda")] == [0], \
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
        steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "surrogate/val_loss")]
        assert steps == [0, 1], (run.data.tags["ignite_mbo.trial_id"], steps)
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    parent = MlflowClient(uri).get_run(meta["parent_run_id"])
    assert parent.data.tags["ignite_mbo.resumed"] == "1" and parent.info.status == "FINISHED"
    assert "### 100th percentile" in resumed.stdout


# ---- SIGINT and a killed trial worker ------------------------------------------------------------

FOUR = SMALL.replace("seed: [0, 1, 2]", "seed: [0, 1]").replace("name: resumable", "name: four")


def count_runs(db: Path, status: str) -> int:
    """Trial runs with ``status``, read straight from the sqlite file (fast enough to poll)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as connection:
            return connection.execute(
                "select count(*) from runs r join tags t on r.run_uuid = t.run_uuid where t.key = 'ignite_mbo.kind' "
                "and t.value = 'trial' and r.status = ? and r.lifecycle_stage = 'active'", (status,)).fetchone()[0]
    except sqlite3.Error:
        return 0


class Sweep:
    """`ignite-mbo sweep` in its own process group (as a terminal's Ctrl-C would reach it), on its own Ray."""

    def __init__(self, tmp_path: Path, design_bench_dir: Path, space: str) -> None:
        self.folder = tmp_path
        (tmp_path / "space.yaml").write_text(space)
        self.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        self.ray_tmp = tempfile.mkdtemp(prefix="rf", dir="/tmp")  # short: Ray's unix sockets live under it
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir), "RAY_TMPDIR": self.ray_tmp,
                    "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.command = ["ignite-mbo", "sweep", "space.yaml", "--tracking-uri", self.uri, "--output-dir", "out",
                        "--num-cpus", "2"]
        self.process: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        self.process = subprocess.Popen(self.command, cwd=self.folder, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        return self.process

    def wait_for(self, condition, what: str, timeout: float = 400) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process is not None and self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def resume(self, command: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=600,
                              start_new_session=True)

    def cleanup(self) -> None:
        kill_marked("RAY_TMPDIR", self.ray_tmp)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def resume_command(stderr: str) -> list[str]:
    """The command the interrupted sweep's last line tells the user to run."""
    import shlex

    last = stderr.strip().splitlines()[-1]
    assert "--resume" in last, stderr[-2000:]
    return shlex.split(last.split("run: ", 1)[1])


def every_trial_once(uri: str, experiment: str, sweep_dir: Path, trials: int, epochs: int = 2) -> pd.DataFrame:
    """Every trial exactly once in the Parquet table and in MLflow, all finished, and the two agree."""
    table = pd.read_parquet(sweep_dir / "results.parquet")
    assert len(table) == trials and table["trial_id"].is_unique and set(table["status"]) == {"TERMINATED"}
    assert len(set(zip(table["regularizer"], table["seed"]))) == trials, "no grid point twice, none missing"
    runs = trial_runs(uri, experiment)
    assert len(runs) == trials, [(r.data.tags.get("ignite_mbo.trial_id"), r.info.status) for r in runs]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert {run.info.run_id for run in runs} == set(table["mlflow_run_id"])
    for run in runs:  # one point per epoch, whichever attempt logged it
        steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "surrogate/val_loss")]
        assert steps == list(range(epochs)), (run.data.tags["ignite_mbo.trial_id"], steps)
    return table


@pytest.mark.slow
def test_sigint_stops_gracefully_and_resume_finishes_with_every_trial_once(tmp_path, design_bench_dir):
    sweep = Sweep(tmp_path, design_bench_dir, FOUR)
    try:
        driver = sweep.start()
        sweep.wait_for(lambda: count_runs(tmp_path / "mlflow.db", "FINISHED") >= 1, "a finished trial")
        os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole process group
        stdout, stderr = driver.communicate(timeout=300)
        assert driver.returncode == 130, stderr[-3000:]
        assert "Traceback" not in stdout + stderr and "Exception ignored" not in stderr, stderr[-3000:]
        command = resume_command(stderr)
        assert command[:3] == ["ignite-mbo", "sweep", "space.yaml"] and command[-1] == "--resume"
        client = MlflowClient(sweep.uri)
        experiment = client.get_experiment_by_name("four").experiment_id
        (parent,) = client.search_runs([experiment], "tags.`ignite_mbo.kind` = 'sweep'")
        assert parent.info.status == "KILLED" and "interrupted" in parent.data.tags["ignite_mbo.interrupted"]
        runs = trial_runs(sweep.uri, "four")
        assert "RUNNING" not in {run.info.status for run in runs}, "no run is left RUNNING"
        stopped = [run for run in runs if run.info.status == "KILLED"]
        assert all("ignite_mbo.interrupted" in run.data.tags and "ignite_mbo.stopped" not in run.data.tags
                   for run in stopped), "recorded as interrupted, not stopped by a scheduler"
        sweep.cleanup()

        resumed = sweep.resume(command)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    finally:
        sweep.cleanup()
    every_trial_once(sweep.uri, "four", tmp_path / "out" / "four", 4)
    finished = MlflowClient(sweep.uri).get_run(parent.info.run_id)
    assert finished.info.status == "FINISHED" and "ignite_mbo.interrupted" not in finished.data.tags  # pass 12's leftover
    assert finished.data.tags["ignite_mbo.ended_before_resume_1"].startswith("interrupted (SIGINT)")


@pytest.mark.slow
def test_sigterm_stops_like_sigint_and_a_corrupt_tuner_state_changes_no_record(tmp_path, design_bench_dir):
    """SIGTERM (what `ray job stop`, Kubernetes and schedulers send, to the driver alone): the trials stop,
    their runs become KILLED, the command prints the resume command and exits 143. A corrupt tuner.pkl
    then gives one line and leaves every record as it was; the intact one resumes the sweep."""
    sweep = Sweep(tmp_path, design_bench_dir, FOUR)
    try:
        driver = sweep.start()
        sweep.wait_for(lambda: count_runs(tmp_path / "mlflow.db", "FINISHED") >= 1, "a finished trial")
        os.kill(driver.pid, signal.SIGTERM)
        stdout, stderr = driver.communicate(timeout=300)
        assert driver.returncode == 143, stderr[-3000:]
        assert "Traceback" not in stdout + stderr and "SIGTERM received" not in stderr, stderr[-3000:]
        command = resume_command(stderr)
        client = MlflowClient(sweep.uri)
        experiment = client.get_experiment_by_name("four").experiment_id
        (parent,) = client.search_runs([experiment], "tags.`ignite_mbo.kind` = 'sweep'")
        assert parent.info.status == "KILLED"
        assert parent.data.tags["ignite_mbo.interrupted"].startswith("interrupted (SIGTERM)")  # pass 12: said SIGINT
        assert "RUNNING" not in {run.info.status for run in trial_runs(sweep.uri, "four")}
        sweep.cleanup()

        state = tmp_path / "out" / "four" / "tuner.pkl"
        intact = state.read_bytes()
        before = sorted((run.info.run_id, run.info.status) for run in trial_runs(sweep.uri, "four"))
        state.write_bytes(b"\x80\x04garbage, not Tune's state")
        refused = sweep.resume(command)
        err = refused.stderr.strip().splitlines()[-1]  # after the "resuming ..." note: one error line
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
        assert err.startswith("ignite-mbo sweep: error: cannot restore the sweep's Tune state"), err
        assert client.get_run(parent.info.run_id).info.status == "KILLED"
        assert "ignite_mbo.resumed" not in client.get_run(parent.info.run_id).data.tags
        assert sorted((run.info.run_id, run.info.status) for run in trial_runs(sweep.uri, "four")) == before
        sweep.cleanup()

        state.write_bytes(intact)
        resumed = sweep.resume(command)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    finally:
        sweep.cleanup()
    every_trial_once(sweep.uri, "four", tmp_path / "out" / "four", 4)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT])
def test_sighup_or_sigquit_stops_a_sweep_like_sigterm(signum, tmp_path, design_bench_dir):
    """The terminal closed (SIGHUP) or Ctrl-\\ (SIGQUIT) during a sweep: trials stopped, runs KILLED, the resume
    command printed, exit 128 + the signal, no traceback and no process of its Ray left behind."""
    sweep = Sweep(tmp_path, design_bench_dir, FOUR)
    try:
        driver = sweep.start()
        sweep.wait_for(lambda: count_runs(tmp_path / "mlflow.db", "FINISHED") >= 1, "a finished trial")
        os.kill(driver.pid, signum)
        stdout, stderr = driver.communicate(timeout=300)
        assert driver.returncode == 128 + signum, stderr[-3000:]
        assert "Traceback" not in stdout + stderr, stderr[-3000:]
        assert resume_command(stderr)
        client = MlflowClient(sweep.uri)
        experiment = client.get_experiment_by_name("four").experiment_id
        (parent,) = client.search_runs([experiment], "tags.`ignite_mbo.kind` = 'sweep'")
        assert parent.info.status == "KILLED"
        assert "RUNNING" not in {run.info.status for run in trial_runs(sweep.uri, "four")}
        deadline = time.monotonic() + 30
        while (left := marked("RAY_TMPDIR", sweep.ray_tmp)) and time.monotonic() < deadline:
            time.sleep(1)
        assert not left, "processes of the sweep's Ray outlived it"
    finally:
        sweep.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("to", ["group", "driver"])
def test_second_sigint_exits_at_once_with_trials_pending_and_resume_recovers(to, tmp_path, design_bench_dir):
    """Ctrl-C twice (to the terminal's process group) or `kill -INT` twice (to the driver alone): exit 130 at once
    with the resume command, no process of the sweep's Ray left behind; --resume then finishes every trial once."""
    sweep = Sweep(tmp_path, design_bench_dir, FOUR)
    send = os.killpg if to == "group" else os.kill
    try:
        driver = sweep.start()
        sweep.wait_for(lambda: count_runs(tmp_path / "mlflow.db", "RUNNING") >= 1, "a running trial")
        send(driver.pid, signal.SIGINT)
        time.sleep(0.5)
        send(driver.pid, signal.SIGINT)
        stdout, stderr = driver.communicate(timeout=60)
        assert driver.returncode == 130, stderr[-3000:]
        assert "Traceback" not in stdout + stderr, stderr[-3000:]
        assert "RUNNING" not in runs_by_status(tmp_path / "mlflow.db"), "pass 8: the second signal closes the runs"
        command = resume_command(stderr)
        deadline = time.monotonic() + 30
        while (left := marked("RAY_TMPDIR", sweep.ray_tmp)) and time.monotonic() < deadline:
            time.sleep(1)
        assert not left, "processes of the sweep's Ray outlived it"

        resumed = sweep.resume(command)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    finally:
        sweep.cleanup()
    every_trial_once(sweep.uri, "four", tmp_path / "out" / "four", 4)


def trial_workers(ray_tmp: str) -> list[int]:
    """Process ids of the Ray workers of this sweep that are running a trial."""
    needle = f"RAY_TMPDIR={ray_tmp}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"ImplicitFunc" in (entry / "cmdline").read_bytes() and needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_a_killed_trial_worker_is_retried_with_every_trial_once(tmp_path, design_bench_dir):
    sweep = Sweep(tmp_path, design_bench_dir, FOUR)
    try:
        driver = sweep.start()
        sweep.wait_for(lambda: count_runs(tmp_path / "mlflow.db", "RUNNING") >= 1 and trial_workers(sweep.ray_tmp),
                       "a trial running in a worker")
        for victim in trial_workers(sweep.ray_tmp):  # the running trial's worker among them, whichever it is
            os.kill(victim, signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=600)
        assert driver.returncode == 0, stdout[-2000:] + stderr[-3000:]
    finally:
        sweep.cleanup()
    table = every_trial_once(sweep.uri, "four", tmp_path / "out" / "four", 4)
    assert (table["attempt"] == 2).sum() >= 1, "the killed trial ran again"


# ---- what the embedded Ray lets in ------------------------------------------------------------------

def descendants(root: int) -> set[int]:
    """``root`` and every process below it (from /proc's parent links)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def listening_sockets(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by one of ``pids`` (Linux /proc)."""
    import ipaddress

    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_address)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # /proc's per-word byte order
            address = ipaddress.ip_address(raw)
            mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
            found.add((str(mapped or address), int(hex_port, 16)))  # ::ffff:127.0.0.1 is 127.0.0.1
    return found


def this_machines_outside_address() -> str | None:
    """A non-loopback IPv4 address of this machine (from the kernel's local routes), if it has one."""
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return None
    for before, line in zip(lines, lines[1:], strict=False):
        if "/32 host LOCAL" in line:
            address = before.strip().removeprefix("|-- ")
            if not address.startswith("127."):
                return address
    return None


JOIN = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
        "print('ran', ray.get(ray.remote(lambda: 1).remote()))")


@pytest.mark.slow
def test_the_embedded_ray_listens_on_loopback_only_and_lets_in_no_client_without_its_token(tmp_path):
    """Every listener of the processes a local sweep's Ray starts is on loopback (pass 17: three metrics
    exporters were on 0.0.0.0 and answered without the token), so this machine's outside address, where it
    has one, reaches none; and on loopback a client without the token cannot join, one with it can (so
    the refusal is the token's doing)."""
    import socket

    from ignite_mbo.platform import local_ray

    marker = f"i18-bind-{os.getpid()}"
    script = tmp_path / "hold.py"
    script.write_text("import time, ray\nfrom ignite_mbo.platform import local_ray\nlocal_ray.start(1)\n"
                      "import os\nprint('GCS', ray.get_runtime_context().gcs_address, os.environ['RAY_AUTH_TOKEN'], flush=True)\n"
                      "time.sleep(300)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**env, "TEST_MARKER": marker}, start_new_session=True)
    try:
        line = driver.stdout.readline() if driver.stdout else ""
        assert line.startswith("GCS"), line
        _, gcs_address, token_value = line.split()
        gcs_port = int(gcs_address.rpartition(":")[2])
        listeners = listening_sockets(descendants(driver.pid))
        assert any(port == gcs_port for _, port in listeners), listeners
        assert {(address, port) for address, port in listeners if not address.startswith("127.")} == set()
        outside = this_machines_outside_address()
        for port in {port for _, port in listeners} if outside else ():
            with socket.socket() as probe:
                probe.settimeout(5)
                assert probe.connect_ex((outside, port)) != 0, (outside, port)
        host = "127.0.0.1"

        def join(with_token: bool) -> subprocess.CompletedProcess[str]:
            extra = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token_value} if with_token else {}
            extra[local_ray.SINGLE_MACHINE_ENV] = "0"  # else Ray turns 127.0.0.1 into the outside address
            return subprocess.run([sys.executable, "-c", JOIN, f"{host}:{gcs_port}"], capture_output=True,
                                  text=True, timeout=120, env={**env, **extra, "TEST_MARKER": marker})

        stranger = join(with_token=False)
        assert stranger.returncode != 0 and "ran 1" not in stranger.stdout, stranger.stdout
        assert "Authentication" in stranger.stderr or "token" in stranger.stderr, stranger.stderr[-2000:]
        member = join(with_token=True)
        assert "ran 1" in member.stdout, member.stderr[-2000:]
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        kill_marked("TEST_MARKER", marker)


# ---- sweep folders claimed atomically; --resume's trust boundary -----------------------------------

def test_sweeps_started_at_once_never_share_a_folder(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from ignite_mbo.platform.folders import claim_sweep_folder

    (tmp_path / "out" / "conc").mkdir(parents=True)  # an empty folder left by an earlier attempt
    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(lambda _: claim_sweep_folder(tmp_path / "out", "conc"), range(8)))
    assert len(set(claimed)) == 8
    assert {path.name for path in claimed} == {"conc", *(f"conc-{k}" for k in range(2, 9))}


def test_resume_reads_tune_state_only_under_the_sweep_folder_or_storage_path(tmp_path):
    from ignite_mbo.errors import UserError
    from ignite_mbo.platform.signals import check_resume_state

    sweep_dir = tmp_path / "out" / "x"
    check_resume_state(str(tmp_path / "out" / "x"), sweep_dir, None)
    check_resume_state("s3://bucket/runs/x", sweep_dir, "s3://bucket/runs")
    for elsewhere, storage in (("/etc/x", None), (str(tmp_path / "other" / "x"), None),
                               (str(tmp_path / "out" / ".." / "other"), None), ("s3://evil/x", "s3://bucket/runs"),
                               ("s3://bucket/runs-evil/x", "s3://bucket/runs")):
        with pytest.raises(UserError, match="outside the sweep folder"):
            check_resume_state(elsewhere, sweep_dir, storage)



class _Payload:
    """A pickle whose loading touches ``marker``: it must never be loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("linked", ["tuner.pkl", "trial_0/params.pkl", "trial_0", "hard:tuner.pkl",
                                    "hard:trial_0/params.pkl"])
def test_resume_never_unpickles_a_state_file_that_links_outside_the_sweep_folder(linked, tmp_path, monkeypatch,
                                                                                 capsys):
    """A Tune state file (or folder) in the sweep folder that is a symlink, or a hard link, to a pickle elsewhere
    is refused in one line, exit 2, before anything is unpickled: the pickle's payload does not run."""
    import pickle

    from ignite_mbo.cli import main
    from ignite_mbo.platform.record import SweepRecord
    from ignite_mbo.platform.spaces import load_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IGNITE_MBO_STORAGE_PATH", raising=False)
    space = tmp_path / "space.yaml"
    space.write_text("name: x\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # an MLflow store, as the sweep left it
    out, evil, marker = tmp_path / "out", tmp_path / "evil", tmp_path / "code-ran"
    sweep_dir = out / "x"
    (sweep_dir / "trial_0").mkdir(parents=True)
    evil.mkdir()
    (evil / "params.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    (evil / "tuner.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    SweepRecord(spec=load_spec(space).model_dump(mode="json"), tracking_uri=uri, experiment="x",
                parent_run_id="0" * 32, storage_path=str(out), experiment_path=str(sweep_dir)).save(sweep_dir)
    hard, linked = linked.startswith("hard:"), linked.removeprefix("hard:")
    target = evil if linked == "trial_0" else evil / Path(linked).name
    if linked == "trial_0":
        (sweep_dir / "trial_0").rmdir()
    if hard:
        os.link(target, sweep_dir / linked)
    else:
        (sweep_dir / linked).symlink_to(target)
    capsys.readouterr()
    code = main(["sweep", str(space), "--output-dir", str(out), "--resume", "--quiet", "--num-cpus", "1"])
    err = capsys.readouterr().err.strip()
    assert not marker.exists(), "the linked pickle was loaded"
    assert code == 2 and "\n" not in err and ("hard link" if hard else "outside the sweep folder") in err, (code, err)
    assert linked in err

@pytest.mark.slow
def test_two_sweeps_started_at_once_in_one_folder_keep_every_row(tmp_path, design_bench_dir):
    """Both pick their own folder; both results tables hold both their rows; MLflow holds 4 trial runs."""
    space = ("name: conc\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick,\n"
             "  baseline_options: {epochs: 1, solver_steps: 5}}\ngrid: {seed: [0, 1]}\nresources: {cpu: 1}\n")
    first, second = Sweep(tmp_path, design_bench_dir, space), Sweep(tmp_path, design_bench_dir, space)
    try:
        for sweep in (first, second):
            sweep.command[sweep.command.index("--num-cpus") + 1] = "1"
            sweep.command.append("--quiet")
        processes = [first.start(), second.start()]
        outputs = [process.communicate(timeout=600) for process in processes]
        for process, (_, stderr) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, stderr[-3000:]
    finally:
        first.cleanup()
        second.cleanup()
    folders = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert folders == ["conc", "conc-2"]
    for name in folders:
        assert len(pd.read_parquet(tmp_path / "out" / name / "results.parquet")) == 2
    assert len(trial_runs(first.uri, "conc")) == 4


# ---- a disk that fills mid-sweep ---------------------------------------------------------------------

FILLS = """
name: fills
trial:
  task: TFBind8-Exact-v0
  baseline: grad-ascent
  fidelity: quick
  baseline_options: {hidden_size: 32, epochs: 100, batch_size: 2048, solver_steps: 20}
grid: {seed: [0, 1, 2, 3]}
failure: {max_retries: 1}
resources: {cpu: 1, gpu: 0}
"""


def runs_by_status(db: Path) -> dict[str, int]:
    """How many runs (sweep and trials) have each status, read straight from the sqlite file."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as connection:
        return dict(connection.execute("select status, count(*) from runs where lifecycle_stage = 'active' "
                                       "group by status").fetchall())


def fill_up(folder: Path) -> Path:
    """Write ``folder/filler`` until its disk has no byte left."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for chunk in (2**20, 4096, 512, 1):
            try:
                while True:
                    handle.write(b"\1" * chunk)
            except OSError:
                continue
    return filler


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs, mounted for the test (needs root, as the tmpfs cases of test_bad_inputs.py)."""
    with tmpfs(tmp_path / "disk", "64m") as mount:
        if mount is None:
            pytest.skip("cannot mount a tmpfs here")
        yield mount


def fill_during_sweep(sweep: Sweep, db: Path, disk: Path) -> tuple[subprocess.Popen, str, str, Path]:
    """Start ``sweep``, fill ``disk`` once a trial has logged metrics to ``db``, wait for the end: the driver,
    its stdout and stderr, and the filler (to free the space again)."""
    try:
        driver = sweep.start()
        sweep.wait_for(lambda: metrics_logged(db) > 0, "a trial's first metrics", timeout=300)
        filler = fill_up(disk)
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        sweep.cleanup()
    return driver, stdout, stderr, filler


@pytest.mark.slow
def test_a_disk_that_fills_mid_sweep_leaves_no_run_running(small_disk, design_bench_dir):
    """The store, the sweep folder and Tune's state on a small disk that a writer fills once the first trial
    has logged metrics: the sweep exits non-zero with one line naming the fix, and no run stays RUNNING."""
    sweep = Sweep(small_disk, design_bench_dir, FILLS)
    sweep.command.append("--quiet")
    db = small_disk / "mlflow.db"
    driver, stdout, stderr, filler = fill_during_sweep(sweep, db, small_disk)
    (small_disk.parent / "sweep.stderr").write_text(stderr)  # kept with the test's folder, to look at
    assert driver.returncode != 0, stdout[-2000:] + stderr[-3000:]
    assert "Traceback" not in stdout + stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ignite-mbo sweep: error: the disk filled up during the sweep"), stderr[-3000:]
    assert "--resume" in last and "Free space" in last, last
    filler.unlink()  # read the store as the user would after freeing space
    statuses = runs_by_status(db)
    assert "RUNNING" not in statuses and statuses.get("FAILED", 0) >= 2, statuses
    assert not list(small_disk.glob("mlflow.db.reserve-*")), "the ballast is removed"


@pytest.mark.slow
def test_the_printed_resume_finishes_a_sweep_whose_store_filled_up(small_disk, tmp_path, design_bench_dir):
    """The store alone on a small disk that fills once a trial has logged metrics (pass 7: the trials failed on
    the full store, and the printed --resume then refused): after freeing space, the printed command finishes
    the sweep, every trial once, FINISHED."""
    work = tmp_path / "work"
    work.mkdir()
    sweep = Sweep(work, design_bench_dir, FILLS)
    db = small_disk / "mlflow.db"
    sweep.uri = f"sqlite:///{db}"
    sweep.command[sweep.command.index("--tracking-uri") + 1] = sweep.uri
    sweep.command.append("--quiet")
    driver, stdout, stderr, filler = fill_during_sweep(sweep, db, small_disk)
    assert driver.returncode == 2 and "Traceback" not in stdout + stderr, stderr[-3000:]
    filler.unlink()
    try:
        resumed = sweep.resume(resume_command(stderr))
    finally:
        sweep.cleanup()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    every_trial_once(sweep.uri, "fills", work / "out" / "fills", trials=4, epochs=100)
    assert runs_by_status(db) == {"FINISHED": 5}, "the sweep's run and its 4 trials' runs"


def test_the_ballast_holds_real_blocks_and_is_freed_before_the_runs_are_closed(tmp_path):
    from ignite_mbo.errors import UserError
    from ignite_mbo.platform.full_disk import FULL_DISK, Ballast, fail_sweep, is_disk_full

    stale = tmp_path / "mlflow.db.reserve-999999999"  # a killed sweep's: no such process
    stale.write_bytes(b"x")
    with Ballast(f"sqlite:///{tmp_path / 'mlflow.db'}", size=2**20) as ballast:
        assert ballast.path is not None and ballast.path.stat().st_blocks * 512 >= 2**20, "not sparse"
        assert not stale.exists()
        closed: list[tuple[str, str, bool]] = []
        full = sqlite3.OperationalError("database or disk is full")
        with pytest.raises(UserError, match="the disk filled up during the sweep.*then resume with --resume"):
            fail_sweep(lambda status, reason: closed.append((status, reason, ballast.path.exists())), full, ballast,
                       "resume with --resume")
        assert closed == [("FAILED", FULL_DISK, False)], "the ballast is freed first"
    assert is_disk_full(RuntimeError("x").with_traceback(None)) is False
    assert is_disk_full(OSError(28, "No space left on device"))
    fail_sweep(lambda status, reason: closed.append((status, reason, True)), ValueError("bad"), ballast, "")
    assert closed[-1] == ("FAILED", "ValueError: bad", True), "another error: closed as before, no UserError"


def test_a_full_output_disk_is_named_even_when_the_error_does_not_say_so(small_disk, tmp_path):
    from ignite_mbo.errors import UserError
    from ignite_mbo.platform.full_disk import Ballast, fail_sweep, full_folders

    results = small_disk / "results" / "sweep"  # not made yet: its nearest existing parent's disk counts
    assert full_folders([results, tmp_path]) == []
    filler = fill_up(small_disk)
    assert full_folders([results, tmp_path]) == [results]
    closed: list[str] = []
    with Ballast(f"sqlite:///{tmp_path / 'mlflow.db'}", size=4096) as ballast, \
            pytest.raises(UserError, match=f"no space left on the device under {results}"):
        fail_sweep(lambda status, reason: closed.append(status), EOFError("Ran out of input"), ballast, "resume",
                   [results, tmp_path])
    assert closed == ["FAILED"]
    filler.unlink()
    assert full_folders([results]) == []


@pytest.mark.slow
def test_an_output_disk_that_fills_mid_sweep_gives_one_line(small_disk, tmp_path, design_bench_dir):
    """The store on a roomy disk, the sweep folder and Tune's state on a small one that fills once the first
    trial has logged metrics: one line naming the full folder, and no run RUNNING."""
    work = tmp_path / "work"
    work.mkdir()
    sweep = Sweep(work, design_bench_dir, FILLS)
    sweep.command[sweep.command.index("--output-dir") + 1] = str(small_disk / "out")
    sweep.command.append("--quiet")
    db = work / "mlflow.db"
    driver, stdout, stderr, filler = fill_during_sweep(sweep, db, small_disk)
    assert driver.returncode != 0 and "Traceback" not in stdout + stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ignite-mbo sweep: error: the disk filled up during the sweep"), stderr[-3000:]
    assert str(small_disk / "out") in last and "--resume" in last, last
    filler.unlink()
    assert "RUNNING" not in runs_by_status(db)


# ---- SIGHUP and a full disk under `ignite-mbo run` ---------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT])
def test_sighup_or_sigquit_to_run_while_training_marks_the_run_killed(signum, tmp_path, design_bench_dir):
    """The terminal closed (SIGHUP) or Ctrl-\\ (SIGQUIT) while `run` trains: handled like SIGTERM, one line,
    exit 128 + the signal, run KILLED."""
    store = tmp_path / "mlflow.db"
    process = start_run(tmp_path, store, design_bench_dir)
    try:
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, err
    assert len(err.strip().splitlines()) == 1 and signal.Signals(signum).name in err, err
    assert runs_by_status(store) == {"KILLED": 1}


@pytest.mark.slow
def test_a_disk_that_fills_under_the_store_of_run_gives_one_line_and_no_running_run(small_disk, design_bench_dir):
    """`run` with its store on a small disk that fills while it trains: one stderr line, exit 2, and once space
    is freed the run reads FAILED (the ballast beside the store let it be closed)."""
    store = small_disk / "mlflow.db"
    process = start_run(small_disk, store, design_bench_dir)
    try:
        filler = fill_up(small_disk)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 2, err[-3000:]
    assert len(err.strip().splitlines()) == 1, err[-3000:]
    assert err.startswith("ignite-mbo run: error: the disk filled up during the run"), err
    filler.unlink()
    assert runs_by_status(store) == {"FAILED": 1}
    assert not list(small_disk.glob("mlflow.db.reserve-*")), "the ballast is removed"


@pytest.mark.slow
def test_ray_that_cannot_start_gives_one_line_and_gives_the_sweep_folder_back(tmp_path, design_bench_dir):
    """RAY_TMPDIR is a file: Ray cannot start; one line naming it, exit 2, and neither the sweep folder nor the
    output folder the sweep made is left, so the next sweep of the space takes the same name."""
    from ignite_mbo.platform.folders import claim_sweep_folder

    space = tmp_path / "space.yaml"
    space.write_text("name: tiny\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n")
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("x")
    argv = [sys.executable, "-m", "ignite_mbo.cli", "sweep", str(space), "--num-cpus", "1",
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir),
                               "RAY_TMPDIR": str(not_a_folder)})
    err = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(done.stderr.strip().splitlines()) == 2, done.stderr  # the "running 1 trials ..." note, the error
    assert err.startswith("ignite-mbo sweep: error: Ray could not start") and str(not_a_folder) in err, err
    assert not (tmp_path / "ignite_mbo_results").exists(), list((tmp_path / "ignite_mbo_results").rglob("*"))
    assert claim_sweep_folder(tmp_path / "ignite_mbo_results", "tiny").name == "tiny"


FINISHING = """
import os, signal, subprocess, sys, time
from ignite_mbo.platform.signals import Finishing

child = subprocess.Popen(["sleep", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
with Finishing("resume hint"):
    os.kill(os.getpid(), signal.SIGINT)  # the first: the results get written
    time.sleep(0.2)
    print("wrote the results", flush=True)
    if sys.argv[1] == "twice":
        os.kill(os.getpid(), signal.SIGINT)  # the second: out at once, the child along
        time.sleep(5)
print("finished", flush=True)
"""


@pytest.mark.parametrize("signals_sent", ["once", "twice"])
def test_a_signal_once_every_trial_is_done_lets_the_results_be_written(signals_sent):
    """After Tune (results, report, Ray's shutdown): a first SIGINT is noted and the sweep goes on; a second exits
    130 at once and takes the process's children (the local Ray's agents) along."""
    done = subprocess.run([sys.executable, "-c", FINISHING, signals_sent], capture_output=True, text=True, timeout=60)
    child, *said = done.stdout.split()
    assert "Traceback" not in done.stderr and "every trial is done" in done.stderr, done.stderr
    if signals_sent == "once":
        assert done.returncode == 0 and said == ["wrote", "the", "results", "finished"], done
        os.kill(int(child), signal.SIGKILL)
    else:
        assert done.returncode == 130 and "finished" not in said and "resume hint" in done.stderr, done
        time.sleep(0.5)
        assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
