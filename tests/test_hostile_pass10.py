"""Issue 18, tenth adversarial pass: what failed, one test per case.

A resumed Tune copies every ``.json`` at the root of its experiment folder (the sweep folder, by default) with its
own state, in place; a disk that filled while it did left the sweep's ``sweep.json`` empty, and the sweep could
then be neither resumed nor reported. The record is written again once the failure has freed room. A command
started in a working folder that was deleted is one line (torch's MKL aborted the import with a line naming
neither the cause nor a fix), and a cut-short Tune state is named as the file it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from ignite_mbo.errors import UserError
from ignite_mbo.platform.record import SWEEP_FILE, SweepRecord
from ignite_mbo.platform.resume_files import saved_state_problem
from ignite_mbo.platform.sweep import SweepRun

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
