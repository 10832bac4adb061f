"""Issue 18, tenth adversarial pass: what failed, one test per case.

A resumed Tune copies every ``.json`` at the root of its experiment folder (the sweep folder, by default) with its
own state, in place; a disk that filled while it did left the sweep's ``sweep.json`` empty, and the sweep could
then be neither resumed nor reported. The record is written again once the failure has freed room. A command
started in a working folder that was deleted is one line (torch's MKL aborted the import with a line naming
neither the cause nor a fix), and a cut-short Tune state is named as the file it is.

Pass 11: a second signal while a stopped command cleans up (SIGINT, then SIGTERM to the group a second later, while
Ray starts) no longer cuts the clean-up off; an exit after Ctrl-C cut ``import ray`` short skips Ray's exit hooks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ignite_mbo.errors import UserError
from ignite_mbo.platform.record import SWEEP_FILE, SweepRecord
from ignite_mbo.platform.resume_files import saved_state_problem
from ignite_mbo.platform.sweep import SweepRun

from processes import ray_starting

RECORD = SweepRecord(spec={"name": "four"}, tracking_uri="sqlite:////tmp/s/mlflow.db", experiment="four",
                     parent_run_id="0" * 32, storage_path="/tmp/s", experiment_path="/tmp/s/four")


@pytest.mark.parametrize("left", [b"", b'{"spec": {"na', None])
def test_a_sweep_record_that_tune_left_empty_on_a_full_disk_is_written_again(left: bytes | None, tmp_path) -> None:
    (tmp_path / SWEEP_FILE).unlink(missing_ok=True)
    if left is not None:
        (tmp_path / SWEEP_FILE).write_bytes(left)
    with pytest.raises(UserError):
        SweepRecord.load(tmp_path)
    sweep = SweepRun.__new__(SweepRun)  # its MLflow run is not needed to keep its record
    sweep.plan, sweep.record = SimpleNamespace(sweep_dir=tmp_path), RECORD
    sweep.keep_record()
    assert SweepRecord.load(tmp_path) == RECORD


def test_a_whole_sweep_record_is_left_as_it_is(tmp_path) -> None:
    other = RECORD.model_copy(update={"experiment": "other"})
    other.save(tmp_path)
    before = (tmp_path / SWEEP_FILE).read_bytes()
    sweep = SweepRun.__new__(SweepRun)
    sweep.plan, sweep.record = SimpleNamespace(sweep_dir=tmp_path), RECORD
    sweep.keep_record()
    assert (tmp_path / SWEEP_FILE).read_bytes() == before


def test_tune_copies_the_sweep_record_with_its_own_state_on_a_resume() -> None:
    """Why the record needs keeping: Ray 2.60 downloads every root-level .json/.pkl of the experiment into its
    staging folder on a resume, and uploads that folder back in place with each state save."""
    import inspect

    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    source = inspect.getsource(_ExperimentCheckpointManager.sync_down_experiment_state)
    assert 'path.endswith(".json")' in source, "Ray no longer copies every .json: keep_record may be unneeded"


def test_a_cut_short_newest_tune_state_is_named_as_that_file(tmp_path) -> None:
    """Pass 10: the line said the folder 'lacks a readable experiment_state-*.json' while an older one was whole."""
    (tmp_path / "tuner.pkl").write_bytes(b"")
    (tmp_path / "experiment_state-2026-12-06_19-00-00.json").write_text(json.dumps({"trial_data": []}))
    (tmp_path / "experiment_state-2026-12-06_19-05-00.json").write_text('{"trial_da')
    problem = saved_state_problem(str(tmp_path))
    assert problem is not None and "experiment_state-2026-12-06_19-05-00.json" in problem and "newest" in problem


def test_a_command_in_a_deleted_working_folder_is_one_line(tmp_path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    for argv in (["--version"], ["sweep", "tiny.yaml"]):
        shell = f"cd {gone} && rmdir {gone} && exec {sys.executable} -m ignite_mbo.cli {' '.join(argv)}"
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
        gone.mkdir()
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
        assert "working folder no longer exists" in done.stderr and "cd to an existing folder" in done.stderr


# ---- pass 11 -----------------------------------------------------------------------------------------------------

TWO_SIGNALS = """
import signal
from ignite_mbo.platform import signals
from ignite_mbo.platform.signals import StopOnSignals, Stopped
signals.UNTIL_EXIT = True  # the ignite-mbo command (a program that called run_sweep gets its own handlers back)
try:
    with StopOnSignals():
        try:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C while Ray starts
        except Stopped:
            signal.raise_signal(signal.SIGTERM)  # and SIGTERM to the group a second later, while it cleans up
            print("cleaned up")
            raise
except Stopped as stopped:
    print("stopped", stopped.signum)
signal.raise_signal(signal.SIGTERM)  # once more, on the way out
print("exited on its own")
"""


def test_a_second_signal_while_a_stopped_command_cleans_up_lets_it_finish() -> None:
    """Pass 11: SIGINT then SIGTERM a second apart while Ray started: the SIGTERM cut the clean-up off (the process
    died of it, silently, leaving an empty output folder, once a half-built store, and Ray's agents running)."""
    done = subprocess.run([sys.executable, "-c", TWO_SIGNALS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:3] == ["cleaned up", "stopped 2", "exited on its own"], done.stdout


HALF_IMPORTED_RAY = """
import atexit, sys, types
from ignite_mbo.platform.signals import exit_process
sys.modules["ray._private.worker"] = types.ModuleType("ray._private.worker")  # `import ray` cut short by Ctrl-C
atexit.register(lambda: print("Ray's exit hook ran (it fails with a traceback here)", file=sys.stderr))
exit_process(130)
"""


def test_an_exit_after_ctrl_c_cut_rays_import_short_skips_its_exit_hooks() -> None:
    """Pass 11 (1 of 21 tries): Ctrl-C during `import ray` printed 'interrupted', then a 34-line traceback from
    Ray's exit hook (module 'ray' has no attribute 'actor')."""
    done = subprocess.run([sys.executable, "-c", HALF_IMPORTED_RAY], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130 and "exit hook ran" not in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [2.0, 6.0, 12.0])
def test_sigint_then_sigterm_to_the_group_while_ray_starts_leaves_nothing(after_s, tmp_path, design_bench_dir) -> None:
    """Pass 11, end to end: Ctrl-C, then SIGTERM to the sweep's process group a second later, while Ray starts.

    Where Ray starts fast (CI's machine), Tune may already run when Ctrl-C comes: the second signal then exits at once
    with 143, as documented, naming the resume command, with no run left RUNNING. Either way no Ray process is left."""
    from test_hostile_pass5 import TINY
    from test_hostile_pass6 import processes_in

    (tmp_path / "tiny.yaml").write_text(TINY)
    argv = [sys.executable, "-m", "ignite_mbo.cli", "sweep", "tiny.yaml", "--num-cpus", "1"]
    process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)}, start_new_session=True)
    try:
        ray_starting(process, after_s)()
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(1)
        with contextlib.suppress(ProcessLookupError):  # a graceful stop within the second leaves no group
            os.killpg(process.pid, signal.SIGTERM)
        err = process.communicate(timeout=120)[1]
    finally:
        process.kill()
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err[-3000:]
    if "stopping the running trials" in err:  # Tune ran already: the first signal stops it, the second exits
        assert process.returncode in (130, 143) and lines[-1].endswith("--resume"), err[-3000:]
        assert running_runs(tmp_path / "mlflow.db") == 0
    else:  # Ray was starting: the clean-up finishes, the second signal waits for it
        assert process.returncode == 130 and len(lines) == 1 and "interrupted" in err, err[-3000:]
        assert not (tmp_path / "ignite_mbo_results").exists() and not (tmp_path / "mlflow.db").exists()
    deadline = time.monotonic() + 10
    while processes_in(tmp_path) and time.monotonic() < deadline:
        time.sleep(1)
    assert not processes_in(tmp_path), "Ray's processes outlived the sweep"


def running_runs(db: Path) -> int:
    """How many MLflow runs in the sqlite store ``db`` are still RUNNING."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return int(connection.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0])
