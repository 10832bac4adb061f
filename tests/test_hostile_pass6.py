"""Issue 18, sixth adversarial pass: what failed, one test per case.

Ctrl-C while a command still imports its libraries is one line and exit 130; the fix a missing store's
error names is an option the command has (``report``: ``--no-mlflow``; ``rerun``: ``--tracking-uri``);
``report --output-dir`` that is a file or cannot be made, and a full disk under what a command writes, are
one line; a results table with words or infinities for scores is refused; a FIFO or a symlink loop given
as the table is named for what it is; a data dir that is a file or a device is named so; ``rerun`` checks
an edited record's bounds as ``run`` does; a sweep folder is held by one process at a time (two
``--resume`` at once); a new sweep folder without room is refused before the store; a resumed grid
sweep whose saved Tune state lost trials fails instead of reporting (and deleting) them away.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from ignite_mbo.cli import main
from ignite_mbo.errors import UserError, path_error
from ignite_mbo.platform import folders
from ignite_mbo.platform.record import SweepRecord

from processes import ray_starting, stop_when, trial_runs_started

ROWS = {"trial_id": ["a", "b"], "status": ["TERMINATED", "TERMINATED"], "task": ["TFBind8-Exact-v0"] * 2,
        "baseline": ["grad-ascent"] * 2, "regularizer": ["none", "ignite"], "seed": [0, 0],
        "score_100th": [0.9, 0.95], "score_80th": [0.8, 0.85], "score_50th": [0.7, 0.75],
        "regularizer_affects_search": [True, True]}


def one_line(code: int, err: str, needle: str) -> str:
    line = err.strip()
    assert code == 2, (code, line)
    assert "\n" not in line and "Traceback" not in line and needle in line, line
    return line


def table(tmp_path: Path, **changes: list[object]) -> Path:
    path = tmp_path / "results.parquet"
    pd.DataFrame({**ROWS, **changes}).to_parquet(path)
    return path


def test_ctrl_c_while_the_command_imports_is_one_line_and_130() -> None:
    code = ("import ignite_mbo.cli as cli\n"
            "def interrupted():\n    raise KeyboardInterrupt\n"
            "cli.build_parser = interrupted\ncli.entry()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "ignite-mbo: interrupted", done.stderr


def test_report_names_its_own_option_when_the_sweeps_store_is_gone(tmp_path, capsys) -> None:
    table(tmp_path)
    SweepRecord(spec={}, tracking_uri=f"sqlite:///{tmp_path}/moved.db", experiment="x", parent_run_id="r",
                storage_path=str(tmp_path), experiment_path=str(tmp_path)).save(tmp_path)
    line = one_line(main(["report", str(tmp_path)]), capsys.readouterr().err, "--no-mlflow")
    assert "--tracking-uri" not in line


def test_report_names_its_own_option_when_the_sweeps_store_is_another_programs(tmp_path, capsys) -> None:
    """Pass 19: the line ended 'pass a new file as --tracking-uri', an option report does not have."""
    table(tmp_path)
    with sqlite3.connect(tmp_path / "accounts.db") as connection:
        connection.execute("CREATE TABLE accounts (id INTEGER)")
    SweepRecord(spec={}, tracking_uri=f"sqlite:///{tmp_path}/accounts.db", experiment="x", parent_run_id="r",
                storage_path=str(tmp_path), experiment_path=str(tmp_path)).save(tmp_path)
    line = one_line(main(["report", str(tmp_path)]), capsys.readouterr().err, "another program's SQLite database")
    assert line.endswith("it is left as it is: put the sweep's store back there, or pass --no-mlflow"), line


def test_rerun_names_its_own_option_when_there_is_no_store(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    line = one_line(main(["rerun", "0123abcd"]), capsys.readouterr().err, "--tracking-uri")
    assert "--no-mlflow" not in line


@pytest.mark.parametrize("output", ["a-file", "/proc/nope/x"])
def test_report_output_dir_that_cannot_be_a_folder_is_one_line(output, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    first, second = tmp_path / "s1", tmp_path / "s2"
    for folder in (first, second):
        folder.mkdir()
        table(folder)
    named = output.removesuffix("/x")  # the path that failed
    one_line(main(["report", str(first), str(second), "--output-dir", output]), capsys.readouterr().err, named)


def test_a_full_disk_is_named_for_the_path_it_could_not_write() -> None:
    message = path_error(OSError(errno.ENOSPC, "No space left on device", "/data/report.md"))
    assert message is not None and "no space left" in message and "/data/report.md" in message


@pytest.mark.parametrize("scores", [["high", "0.9"], [float("inf"), 0.9]])
def test_a_results_table_with_words_or_infinities_for_scores_is_refused(scores, tmp_path, capsys) -> None:
    path = table(tmp_path, score_100th=scores)
    one_line(main(["report", str(path), "--no-mlflow"]), capsys.readouterr().err, "score_100th")
    one_line(main(["claims", str(path)]), capsys.readouterr().err, "score_100th")


def test_a_fifo_or_a_symlink_loop_as_the_table_is_named(tmp_path, capsys) -> None:
    os.mkfifo(tmp_path / "fifo.parquet")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for command in ("report", "claims"):
        one_line(main([command, str(tmp_path / "fifo.parquet")]), capsys.readouterr().err, "FIFO")
        one_line(main([command, str(tmp_path / "loop1")]), capsys.readouterr().err, "reaches no file")


@pytest.mark.parametrize("data_dir", ["a-file", "/dev/null"])
def test_a_data_dir_that_is_not_a_folder_is_named_so(data_dir, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    one_line(main(["data", "verify", "--data-dir", data_dir]), capsys.readouterr().err, "is not a folder")


def test_rerun_checks_an_edited_records_bounds_as_run_does(tmp_path, monkeypatch, capsys, design_bench_dir) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["run", "--fidelity", "quick", "--quiet", "--threads", "1", "--set", "epochs=1",
                 "--tracking-uri", uri]) == 0
    capsys.readouterr()
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        run_id = db.execute("select run_uuid from runs").fetchone()[0]
        assert db.execute("update params set value = '40000' where key like '%validation_size'").rowcount == 1
    one_line(main(["rerun", run_id, "--tracking-uri", uri, "--quiet"]), capsys.readouterr().err, "validation_size")


def test_a_sweep_folder_is_held_by_one_process_at_a_time(tmp_path) -> None:
    with folders.held(tmp_path):
        probe = "import sys; from pathlib import Path; from ignite_mbo.platform import folders\n" \
                "with folders.held(Path(sys.argv[1])): pass\n"
        done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode != 0 and "another ignite-mbo process is running the sweep" in done.stderr
    with folders.held(tmp_path):  # free again once the first holder is done
        pass


def test_a_new_sweep_folder_without_room_is_refused_and_given_back(tmp_path, monkeypatch) -> None:
    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folders.os, "fsync", full)
    with pytest.raises(UserError, match="free space there"):
        folders.claim_sweep_folder(tmp_path / "out", "tiny")
    assert not (tmp_path / "out" / "tiny").exists()


def test_a_grid_sweep_that_lost_trials_fails_instead_of_reporting() -> None:
    from ignite_mbo.platform.sweep import check_every_trial

    grid = SimpleNamespace(search=None, search_alg=None)
    with pytest.raises(UserError, match="hold 1 of the sweep's 3 trials"):
        check_every_trial(SimpleNamespace(spec=grid), 1, 3)  # type: ignore[arg-type]
    check_every_trial(SimpleNamespace(spec=grid), 3, 3)  # type: ignore[arg-type]
    searched = SimpleNamespace(search={"seed": "randint"}, search_alg=None)  # suggestions: no count to meet
    check_every_trial(SimpleNamespace(spec=searched), 1, 3)  # type: ignore[arg-type]


def processes_in(folder: Path) -> list[int]:
    """The processes whose working folder is ``folder`` (a sweep's Ray processes run there)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(entry / "cwd")) == folder:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_a_sweep_stopped_by_sigterm_leaves_no_ray_process_behind(tmp_path, design_bench_dir) -> None:
    import time

    from test_hostile_pass5 import TINY

    (tmp_path / "tiny.yaml").write_text(TINY)
    argv = [sys.executable, "-m", "ignite_mbo.cli", "sweep", "tiny.yaml", "--num-cpus", "1",
            "--override", "trial.baseline_options.epochs=1000"]
    process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)})
    err, _ = stop_when(process, lambda: trial_runs_started(tmp_path / "mlflow.db"))
    assert process.returncode == 143 and "--resume" in err, err
    deadline = time.monotonic() + 20  # Ray's agents notice their raylet is gone within a few seconds at most
    while processes_in(tmp_path) and time.monotonic() < deadline:
        time.sleep(1)
    assert not processes_in(tmp_path)


SWALLOWED = """
import os, signal
from ignite_mbo.platform.signals import StopOnSignals, Stopped
os.register_at_fork(after_in_parent=lambda: signal.raise_signal(signal.SIGTERM))  # Python ignores what it raises
with StopOnSignals() as stop:
    child = os.fork()  # as Ray's start does, many times
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    print("went on")
    try:
        stop.rearm()
    except Stopped as stopped:
        print("stopped", stopped.signum)
"""


def test_a_signal_whose_stop_python_swallowed_in_a_fork_hook_stops_the_command_after_ray_starts() -> None:
    """CI, stop 23: SIGTERM arrived while Ray forked; the ``Stopped`` raised inside logging's at-fork hook was
    printed and ignored, and the resumed sweep ran on for minutes instead of printing its resume command."""
    done = subprocess.run([sys.executable, "-c", SWALLOWED], capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[:2] == ["went on", "stopped 15"], (done.stdout, done.stderr)  # swallowed, then
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr  # raised, quietly


@pytest.mark.slow
def test_a_resume_stopped_while_ray_starts_prints_the_resume_command(tmp_path, design_bench_dir) -> None:

    from test_hostile_pass5 import TINY

    (tmp_path / "tiny.yaml").write_text(TINY)
    argv = [sys.executable, "-m", "ignite_mbo.cli", "sweep", "tiny.yaml", "--num-cpus", "1",
            "--override", "trial.baseline_options.epochs=1000"]
    env = {**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)}
    first = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stop_when(first, lambda: trial_runs_started(tmp_path / "mlflow.db"))
    assert first.returncode == 143
    resume = subprocess.Popen([*argv, "--resume"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    err, _ = stop_when(resume, ray_starting(resume, 1))
    assert resume.returncode == 143, err
    assert "--resume" in err and "Traceback" not in err, err
