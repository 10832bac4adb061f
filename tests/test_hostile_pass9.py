"""Issue 18, ninth adversarial pass: the cases left open after it, one test each.

A sqlite store locked by another program for longer than a few seconds (a backup, a ``sqlite3`` shell) is waited
out, for minutes, wherever the store is opened; a trial that still fails on it, or on a full disk, is named by its
own error (not Ray's wrapper), its run is FAILED (not left KILLED by an earlier stop), the sweep ends with one line
on stderr, and ``--resume`` runs it again. A disk that fills under Ray's temporary folder (RAY_TMPDIR) is named as
the full one, and the sweep's line is the last one printed.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ignite_mbo import mlflow_store
from ignite_mbo.platform.finish import finish_sweep, reconcile_mlflow
from ignite_mbo.platform.record import SweepRecord
from ignite_mbo.platform.results import raised
from ignite_mbo.platform.resume_files import failed_for_a_passing_reason

from processes import tmpfs


def hold_lock(db: Path, seconds: float) -> threading.Thread:
    """Another program's exclusive transaction on ``db`` for ``seconds`` (readers and writers wait)."""
    taken = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN EXCLUSIVE")
        taken.set()
        time.sleep(seconds)
        connection.execute("ROLLBACK")
        connection.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(10)
    return thread


def test_a_store_locked_for_longer_than_sqlites_own_wait_is_waited_out_where_it_is_opened(tmp_path: Path) -> None:
    """Pass 9: a 45 s lock during --resume failed a trial where its worker opened the store (MLflow reads the
    schema there, outside every retry): sqlite's own 5 s wait ran out, and the trial failed for good."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_store.start_sweep_run(uri, "s", "sweep:s", {})
    opens = f"from ignite_mbo import mlflow_store; print(len(mlflow_store._client({uri!r}).search_experiments()))"
    locker = hold_lock(tmp_path / "mlflow.db", 15)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", opens], capture_output=True, text=True, timeout=120)  # a worker
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr[-2000:]
    assert time.monotonic() - started > 10  # it did wait for the lock
    assert "the tracking store is locked by another program; waiting up to 3 min" in done.stderr  # pass 29: said
    locker.join()


def sweep_record(tmp_path: Path) -> tuple[SweepRecord, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = mlflow_store.start_sweep_run(uri, "s", "sweep:s", {})
    record = SweepRecord(spec={"name": "s"}, tracking_uri=uri, experiment="s", parent_run_id=parent,
                         storage_path=str(tmp_path), experiment_path=str(tmp_path / "s"))
    return record, parent


def test_an_errored_trial_whose_run_an_earlier_stop_left_killed_is_failed_with_its_reason(tmp_path: Path) -> None:
    """Pass 9: the resumed attempt failed before it could open its run, and the run kept the KILLED status and
    the 'finish the sweep with --resume' tag of the earlier Ctrl-C."""
    record, parent = sweep_record(tmp_path)
    client = MlflowClient(record.tracking_uri)
    run = client.create_run(client.get_run(parent).info.experiment_id, tags={
        "ignite_mbo.kind": "trial", "ignite_mbo.sweep_run_id": parent, "ignite_mbo.trial_id": "t1"})
    client.set_terminated(run.info.run_id, "KILLED")
    table = pd.DataFrame({"trial_id": ["t1"], "status": ["ERROR"], "error": ["OperationalError: database is locked"]})
    reconcile_mlflow(record, table)
    closed = client.get_run(run.info.run_id)
    assert closed.info.status == "FAILED"
    assert "database is locked" in closed.data.tags["ignite_mbo.error"]


def test_a_trials_error_is_what_it_raised_not_rays_wrapper() -> None:
    from ray.exceptions import RayTaskError

    cause = sqlite3.OperationalError("database is locked")
    wrapped = RayTaskError("\x1b[36mray::ImplicitFunc.train()\x1b[39m", "Traceback ...", cause)
    assert raised(wrapped) == "OperationalError: database is locked"
    assert raised(ValueError("bad")) == "ValueError: bad"


@pytest.mark.parametrize(("error", "passing"), [
    ("sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked\n", True),
    ("OSError: [Errno 28] No space left on device\n", True),
    ("ValueError: a bug of the trial's own\n", False),
])
def test_resume_runs_again_a_trial_that_failed_on_a_locked_store(error: str, passing: bool, tmp_path: Path) -> None:
    trial = tmp_path / "grad-ascent_none_TFBind8-Exact-v0_s1_5c8ec_00001"
    trial.mkdir()
    (trial / "error.txt").write_text(f"Traceback (most recent call last):\n...\n{error}")
    assert failed_for_a_passing_reason(str(tmp_path)) is passing


@pytest.mark.parametrize(("error", "needle"), [
    ("OperationalError: (sqlite3.OperationalError) database is locked", "passing reason"),
    ("ValueError: a bug", "traceback is in error.txt"),
])
def test_a_sweep_with_failed_trials_ends_with_one_line_saying_what_to_do(error: str, needle: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Pass 9: the sweep exited 1 with nothing on stderr; the reason shown was Ray's actor header."""
    from ignite_mbo.platform import finish

    record, _ = sweep_record(tmp_path)
    monkeypatch.setattr(finish, "report_sweep", lambda *args, **kwargs: ("", []))
    table = pd.DataFrame({"trial_id": ["t0", "t1"], "status": ["TERMINATED", "ERROR"], "error": ["", error],
                          "baseline": ["grad-ascent"] * 2, "regularizer": ["none"] * 2,
                          "task": ["TFBind8-Exact-v0"] * 2, "seed": [0, 1]})
    outcome = finish_sweep(tmp_path, table, record, "to finish the sweep run: ignite-mbo sweep s.yaml --resume")
    assert outcome.failure is not None and outcome.failure.startswith("1 of 2 trials failed")
    assert needle in outcome.failure and "\n" not in outcome.failure
    assert outcome.failure.endswith("--resume") is (needle == "passing reason")


@pytest.mark.slow
def test_a_ray_temp_folder_that_fills_mid_sweep_is_named_in_the_last_line(tmp_path, design_bench_dir) -> None:
    """Pass 9: RAY_TMPDIR on a small disk filled mid-sweep: the line named the store's and output folder's disk
    (60 GB free) and Ray's 'Failed flush to file ... No space left on device' came after it."""
    from test_fault_tolerance import FILLS, Sweep, fill_during_sweep, runs_by_status

    sweep = Sweep(tmp_path, design_bench_dir, FILLS)
    sweep.command.append("--quiet")
    ray_tmp = Path(sweep.ray_tmp)
    ray_tmp.rmdir()
    with tmpfs(ray_tmp, "64m") as mount:
        if mount is None:
            pytest.skip("cannot mount a tmpfs here")
        driver, stdout, stderr, filler = fill_during_sweep(sweep, tmp_path / "mlflow.db", mount)
        filler.unlink(missing_ok=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert driver.returncode != 0 and "Traceback" not in stdout + stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ignite-mbo sweep: error:") and str(ray_tmp) in last and "--resume" in last, stderr[-3000:]
    assert "RUNNING" not in runs_by_status(tmp_path / "mlflow.db")

