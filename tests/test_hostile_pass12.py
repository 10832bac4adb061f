"""Issue 18, twelfth adversarial pass (and what pass 11 noted beside its defects): one test per case."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import pytest
import sqlalchemy.exc

from ignite_mbo.cli import main
from ignite_mbo.platform.signals import Stopped
from ignite_mbo.store_guard import store_failure


def test_a_full_store_line_quotes_the_cause_not_sqlalchemys_autoflush_hint() -> None:
    """Pass 11: a store whose disk filled while MLflow's session autoflushed quoted SQLAlchemy's preamble
    ('raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block ...')."""
    import sqlite3

    cause = sqlite3.OperationalError("database or disk is full")
    error = sqlalchemy.exc.OperationalError("INSERT INTO metrics ...", {}, cause)
    error.add_detail("raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block "
                     "if this flush is occurring prematurely")
    assert str(error).startswith("(raised as a result of Query-invoked autoflush"), str(error)  # as SQLAlchemy says it
    line = store_failure(error)
    assert line is not None and "disk holding the tracking store is full" in line, line
    assert "autoflush" not in line and "database or disk is full" in line, line
    assert "then run the command again (a new run or sweep may pass another --tracking-uri" in line, line  # a resume can't


@pytest.mark.parametrize(("stop", "status"), [(KeyboardInterrupt(), 130), (Stopped(signal.SIGTERM), 143)])
def test_a_resume_stopped_before_tune_names_the_resume_command(stop, status, monkeypatch, capsys) -> None:
    """Pass 11: Ctrl-C while ``sweep --resume`` still imported its libraries said only 'interrupted'; the sweep is
    as it was, and the line now says how to finish it. A new sweep stopped that early has nothing to finish."""
    import ignite_mbo.platform.sweep as sweep

    def stopped(*args: object, **kwargs: object) -> None:
        raise stop

    monkeypatch.setattr(sweep, "run_sweep", stopped)
    assert main(["sweep", "space.yaml", "--num-cpus", "1", "--resume"]) == status
    line = capsys.readouterr().err.strip()
    assert line.endswith("; to finish the sweep run: ignite-mbo sweep space.yaml --num-cpus 1 --resume"), line
    assert main(["sweep", "space.yaml"]) == status
    assert "--resume" not in capsys.readouterr().err


def test_a_full_disk_without_a_file_name_is_named_by_the_fullest_path_the_command_writes(tmp_path, monkeypatch) -> None:
    """Pass 9: ``report`` on a full disk said 'a device this command writes to' (the error named no file); the line
    now names the argument whose device is (nearly) full."""
    import errno
    import os
    from types import SimpleNamespace

    from ignite_mbo.errors import path_error

    store, output = tmp_path / "small" / "mlflow.db", tmp_path / "out"
    store.parent.mkdir()
    real = os.statvfs

    def statvfs(path: object) -> object:
        free = 4096 if str(path).startswith(str(store.parent)) else real(path).f_bavail
        return SimpleNamespace(f_bavail=free, f_frsize=1)

    monkeypatch.setattr(os, "statvfs", statvfs)
    full = OSError(errno.ENOSPC, "No space left on device")
    line = path_error(full, [output, f"sqlite:///{store}", 3, None, ["x"]])
    assert line is not None and str(store) in line and "4,096 bytes free" in line, line
    monkeypatch.setattr(os, "statvfs", real)
    assert "a device this command writes to" in (path_error(full, [output]) or ""), "no full device: the old line"


LATER_SIGNAL = """
import os, signal, sys, time
from ignite_mbo.platform import signals
from ignite_mbo.platform.signals import Interruptions, StopOnSignals

signals.UNTIL_EXIT = sys.argv[1] != "in a program that called run_sweep"  # set by the ignite-mbo command
own = signal.getsignal(signal.SIGINT)
with StopOnSignals():
    with Interruptions("to finish the sweep run: X --resume", lambda since_ms, signum: print("closed", signum)):
        signal.signal(signal.SIGUSR1, lambda *args: print("tune stops", flush=True))  # Tune's graceful stop
        os.kill(os.getpid(), signal.SIGTERM)  # the first signal
        time.sleep(0.2)
    print("tune stopped", flush=True)
    if sys.argv[1] == "while the sweep closes its runs":
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)
print("the command prints its resume line and exits", flush=True)
if not signals.UNTIL_EXIT:
    print("handlers back:", signal.getsignal(signal.SIGINT) is own, flush=True)
    sys.exit(0)
os.kill(os.getpid(), signal.SIGHUP)
time.sleep(5)
print("went on", flush=True)
"""


@pytest.mark.parametrize("when", ["while the sweep closes its runs", "as the command exits",
                                  "in a program that called run_sweep"])
def test_a_second_signal_after_tune_stopped_exits_at_once_with_the_resume_line(when) -> None:
    """Pass 12: a second signal that came after Tune had stopped (the sweep closing its runs, Ray shutting down,
    the command exiting) killed the process silently (SIGTERM), or ended in 'interrupted (stopped by SIGHUP)':
    the last line was not the resume command. Each signal after the first is now the documented second one, and
    the runs are closed with the first signal's name."""
    done = subprocess.run([sys.executable, "-c", LATER_SIGNAL, when], capture_output=True, text=True, timeout=60)
    if when == "in a program that called run_sweep":  # a notebook: its own handlers come back
        assert done.returncode == 0 and done.stdout.splitlines()[-1] == "handlers back: True", done
        return
    assert done.returncode == 129, (done.returncode, done.stdout, done.stderr)
    assert done.stdout.splitlines()[:2] == ["tune stops", "tune stopped"] and "went on" not in done.stdout
    assert done.stdout.splitlines()[-1] == "closed 15", done.stdout  # the runs are closed as stopped by SIGTERM
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "SIGTERM: stopping the running trials and saving the sweep (send it again to exit at once)"
    assert lines[-1] == "SIGHUP again: exited at once; to finish the sweep run: X --resume", done.stderr


def test_a_resume_onto_a_full_disk_is_refused_before_anything_runs(tmp_path) -> None:
    """Pass 12: ``--resume`` with its ``--output-dir`` or ``--storage-path`` on a full disk ran every remaining trial
    into the full disk, left Tune's new state file cut short beside the whole one, and from then on ``--resume``
    was refused even once space was free. It is now refused at once, and nothing is written."""
    from ignite_mbo.errors import UserError
    from ignite_mbo.platform.folders import check_room_to_resume

    from processes import tmpfs

    with tmpfs(tmp_path / "small", "2m") as mount:
        if mount is None:
            pytest.skip("cannot mount a tmpfs here")
        sweep_dir, experiment = mount / "out" / "s", mount / "storage" / "s"
        sweep_dir.mkdir(parents=True)
        experiment.mkdir(parents=True)
        check_room_to_resume(sweep_dir, str(experiment))  # room: nothing to say
        check_room_to_resume(sweep_dir, str(mount / "gone"))  # a missing state has its own line
        (mount / "filler").write_bytes(bytes(1_500_000))
        with pytest.raises(UserError, match=r"cannot write in .*/out/s \(No space left on device\).*free space there"):
            check_room_to_resume(sweep_dir, str(experiment))
        assert sorted(path.name for path in sweep_dir.iterdir()) == [], "the probe is not left behind"
        (mount / "filler").unlink()
        check_room_to_resume(sweep_dir, "s3://bucket/s")  # remote storage: Tune's own errors


@pytest.mark.slow
def test_a_resume_onto_a_full_output_disk_changes_nothing_and_the_next_one_finishes(tmp_path, design_bench_dir) -> None:
    """Pass 12, end to end: Ctrl-C after a trial finished, the output disk filled, ``--resume`` refused in one line
    with Tune's state untouched; space freed, the same command finishes every trial once."""
    from test_fault_tolerance import FOUR, Sweep, every_trial_once, resume_command

    from processes import tmpfs

    sweep = Sweep(tmp_path, design_bench_dir, FOUR)
    with tmpfs(tmp_path / "out", "24m") as mount:
        if mount is None:
            pytest.skip("cannot mount a tmpfs here")
        try:
            driver = sweep.start()
            sweep.wait_for(lambda: count_finished(tmp_path / "mlflow.db") >= 1, "a finished trial")
            os.killpg(driver.pid, signal.SIGINT)
            command = resume_command(driver.communicate(timeout=300)[1])
            sweep.cleanup()
            filler = mount / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as out:
                while True:
                    out.write(bytes(1 << 20))
            states = sorted((path, path.stat().st_size) for path in (mount / "four").rglob("*") if path.is_file())
            refused = sweep.resume(command)
            lines = refused.stderr.strip().splitlines()
            assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
            assert "cannot write in" in lines[-1] and "No space left" in lines[-1], lines[-1]
            assert sorted((path, path.stat().st_size) for path in (mount / "four").rglob("*") if path.is_file()) == states
            filler.unlink()
            finished = sweep.resume(command)
            assert finished.returncode == 0, finished.stderr[-3000:]
            every_trial_once(sweep.uri, "four", mount / "four", 4)
        finally:
            sweep.cleanup()


def count_finished(db) -> int:
    from test_fault_tolerance import count_runs

    return count_runs(db, "FINISHED")


CTRL_C_WHILE_IMPORTING = """
import os, signal, sys
import ignite_mbo.cli as cli

build_parser, signum = cli.build_parser, getattr(signal, sys.argv[1])

def importing_torch():
    os.kill(os.getpid(), signum)  # inside torch's import, C++ calls Python code
    print("the imports went on", flush=True)
    return build_parser()

cli.build_parser = importing_torch
sys.argv = ["ignite-mbo", "baselines"]
cli.entry()
"""


@pytest.mark.parametrize(("name", "status", "line"), [("SIGINT", 130, "ignite-mbo: interrupted"),
                                                      ("SIGTERM", 143, "ignite-mbo: interrupted (stopped by SIGTERM)")])
def test_a_signal_while_the_libraries_import_acts_once_they_are_imported(name, status, line) -> None:
    """Pass 12 (1 Ctrl-C in 56, 0.6 s after the start): a KeyboardInterrupt raised inside Python code that torch's
    C++ called aborted the process (exit 134, pybind11's 'terminate called ... error_already_set'). The signal is
    now noted during the imports and acts after them: one line, and 130 or 143."""
    done = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_IMPORTING, name], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == status and done.stdout.strip() == "the imports went on", (done.stdout, done.stderr)
    assert done.stderr.strip() == line, done.stderr


@pytest.mark.parametrize("revision", ["../../../etc", "/abs", "main\nx", "", "a" * 200, "v1/../../x"])
def test_a_revision_that_is_no_branch_tag_or_commit_is_refused_before_any_download(revision, tmp_path, capsys) -> None:
    """Pass 12's note: ``data download --revision ../../../etc`` was passed on unchecked (Hugging Face's cache
    keeps a file per revision name)."""
    assert main(["data", "download", "--data-dir", str(tmp_path / "data"), "--revision", revision]) == 2
    line = capsys.readouterr().err.strip()
    assert "is not a branch, tag or commit" in line and len(line.splitlines()) == 1, line
    assert not (tmp_path / "data").exists()


# ---- pass 13: rerun ------------------------------------------------------------------------------

RERUN_STOPPED = """
import os, signal, sys
import ignite_mbo.platform.rerun as rerun

signum = getattr(signal, sys.argv[1])

def running(*args, **kwargs):
    os.kill(os.getpid(), signum)  # the trial runs again
    raise AssertionError("went on")

rerun.rerun = running
from ignite_mbo.cli import entry
sys.argv = ["ignite-mbo", "rerun", "0123456789abcdef", "--tracking-uri", "sqlite:///" + sys.argv[2]]
entry()
"""


@pytest.mark.parametrize(("name", "status"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_rerun_stopped_by_sigterm_or_sighup_says_so_in_one_line(name, status, tmp_path) -> None:
    """Pass 13: ``rerun`` got SIGTERM or SIGHUP while its trial ran and died of it, silently (-15, -1); ``run``
    says 'interrupted' and exits 143."""
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # a store
    done = subprocess.run([sys.executable, "-c", RERUN_STOPPED, name, str(tmp_path / "mlflow.db")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == status, (done.returncode, done.stderr)
    assert done.stderr.strip() == f"ignite-mbo rerun: interrupted (stopped by {name})", done.stderr


def test_rerun_of_a_record_whose_score_is_not_a_number_is_refused_before_the_trial_runs(monkeypatch) -> None:
    """Pass 13: ``score_100th`` edited to 'abc' ran the whole trial, then ended in an 18-line TypeError."""
    from ignite_mbo import mlflow_store, tasks
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.errors import UserError
    from ignite_mbo.platform.rerun import rerun
    from ignite_mbo.provenance import record_params

    params = {key: str(value) for key, value in record_params(TrialConfig.parse({"fidelity": "quick"})).items()}
    monkeypatch.setattr(mlflow_store, "run_record", lambda uri, run_id: (params, {}, {"score_100th": "abc"}))
    monkeypatch.setattr(tasks, "make", lambda *args, **kwargs: pytest.fail("the trial ran"))
    with pytest.raises(UserError, match="recorded score_100th is 'abc', not a number"):
        rerun("sqlite:///x.db", "r1")


def test_a_recorded_setting_the_baseline_does_not_have_is_said_to_be_not_applied() -> None:
    """Pass 13: ``baseline.evil=1`` added to a record was reported 'pinned to the recorded value', and not applied."""
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.provenance import config_from_params, record_params

    params = {key: str(value) for key, value in record_params(TrialConfig.parse({"fidelity": "quick"})).items()}
    config, lines = config_from_params({**params, "baseline.evil": "1"})
    assert lines == ["not applied: evil (recorded 1) is not a setting of grad-ascent today"], lines
    assert "evil" not in config.baseline_settings().model_dump()


@pytest.mark.parametrize(("edit", "line", "options"), [
    ("20000", "pinned to the recorded value: task option max_samples: recorded 20000, now None", {"max_samples": 20000}),
    (None, "not applied: task option bogus (recorded 3) is not a setting of TFBind8-Exact-v0 today", {}),
])
def test_an_edited_task_option_is_pinned_or_said_to_be_not_applied(edit, line, options) -> None:
    """Pass 14: ``task.max_samples`` edited in a record (no ``task_options.max_samples``) was ignored without a word."""
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.provenance import config_from_params, record_params

    params = {key: str(value) for key, value in record_params(TrialConfig.parse({"fidelity": "quick"})).items()}
    assert params["task.max_samples"] == "None" and not any(key.startswith("task_options.") for key in params)
    config, lines = config_from_params({**params, **({"task.max_samples": edit} if edit else {"task.bogus": "3"})})
    assert lines == [line] and config.task_options == options, lines


def test_an_edited_task_option_out_of_bounds_is_one_line() -> None:
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.errors import UserError
    from ignite_mbo.provenance import config_from_params, record_params

    params = {key: str(value) for key, value in record_params(TrialConfig.parse({"fidelity": "quick"})).items()}
    with pytest.raises(UserError) as refused:
        config_from_params({**params, "task.max_samples": "-5"})
    assert "max_samples" in str(refused.value) and "\n" not in str(refused.value), refused.value
