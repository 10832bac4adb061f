"""Pass 15 (an independent adversarial pass, 60 cases): a newline in a tracking URI or a search space's path."""

from __future__ import annotations

import os

import pytest

from ignite_mbo.cli import main

TINY = "name: tiny\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\ngrid: {seed: [0]}\n"


@pytest.mark.parametrize("command", [["run", "--fidelity", "quick"], ["sweep", "tiny.yaml"]])
def test_a_tracking_uri_with_a_newline_is_refused_in_one_line_before_anything_is_written(command, tmp_path, capsys,
                                                                                          monkeypatch) -> None:
    """It was accepted: a store file named with a newline, and the closing 'MLflow store:' and 'mlflow ui' lines broken
    in two (--output-dir and --storage-path already refused one)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    assert main([*command, "--tracking-uri", f"sqlite:///{tmp_path}/m\n.db"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "tracking URI" in line and "control character '\\n'" in line, line
    assert sorted(os.listdir(tmp_path)) == ["tiny.yaml"]


def test_a_search_space_path_with_a_newline_is_refused_in_one_line(tmp_path, capsys, monkeypatch) -> None:
    """It ran, and stopped, its resume command spanned two lines: the last line was not the command to run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a\nb.yaml").write_text(TINY)
    assert main(["sweep", "a\nb.yaml"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "the search space 'a\\nb.yaml' holds the control character" in line, line
    assert sorted(os.listdir(tmp_path)) == ["a\nb.yaml"]


def test_the_printed_resume_command_of_a_relative_storage_path_gets_past_the_storage_check(tmp_path,
                                                                                           monkeypatch) -> None:
    """Pass 16: `sweep tiny.yaml --storage-path sp`, stopped, printed `... --storage-path sp --resume`, and that
    command was refused: 'the sweep's Tune experiment is under /abs/sp; resume with that --storage-path'."""
    from ignite_mbo.errors import UserError
    from ignite_mbo.platform.plan import plan_sweep
    from ignite_mbo.platform.record import SweepRecord
    from ignite_mbo.platform.spaces import load_spec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    sweep_dir = tmp_path / "ignite_mbo_results" / "tiny"
    sweep_dir.mkdir(parents=True)
    SweepRecord(spec=load_spec("tiny.yaml").model_dump(mode="json"), tracking_uri=f"sqlite:///{tmp_path}/gone.db",
                experiment="tiny", parent_run_id="r1", storage_path=str(tmp_path / "sp"),
                experiment_path=str(tmp_path / "sp" / "tiny")).save(sweep_dir)
    with pytest.raises(UserError) as refused:
        plan_sweep("tiny.yaml", resume=True, storage_path="sp", num_cpus=1)
    assert "no MLflow store at" in str(refused.value), refused.value  # the next check: the storage path matched
    with pytest.raises(UserError, match="resume with that --storage-path"):
        plan_sweep("tiny.yaml", resume=True, storage_path="elsewhere", num_cpus=1)


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder", "huge"])
def test_a_sweep_record_that_is_a_device_a_pipe_a_folder_or_huge_is_one_line_at_once(kind, tmp_path) -> None:
    """Pass 16: sweep.json linked to /dev/zero was read without bound (killed at 22 GB by the kernel), and a FIFO in
    its place hung `--resume` and `report` with no word."""
    from ignite_mbo.errors import UserError
    from ignite_mbo.platform import record
    from ignite_mbo.platform.record import SweepRecord

    path = tmp_path / "sweep.json"
    if kind == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b" " * (record.MAX_RECORD_BYTES + 1))
    with pytest.raises(UserError) as refused:
        SweepRecord.load(tmp_path)
    expected = "not a sweep record" if kind == "huge" else "is not a regular file"
    assert expected in str(refused.value) and "\n" not in str(refused.value), refused.value


def test_a_pipe_among_tunes_state_files_is_refused_before_it_is_read(tmp_path) -> None:
    """Pass 16: the newest experiment_state-*.json replaced by a FIFO hung `--resume` with no word."""
    from ignite_mbo.errors import UserError
    from ignite_mbo.platform.resume_files import check_state_files

    experiment = tmp_path / "out" / "tiny"
    experiment.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"")
    os.mkfifo(experiment / "experiment_state-2026-12-07_02-00-00.json")
    with pytest.raises(UserError, match="is not a regular file"):
        check_state_files(str(experiment), experiment, None)


def test_a_tag_another_process_set_at_the_same_moment_is_not_an_error(tmp_path) -> None:
    """Seen in a fast test run: four processes opening one new experiment at once, three of them found its shared-view
    tag missing and inserted it together; all but one failed with SQLAlchemy's 'UNIQUE constraint failed'."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ignite_mbo import mlflow_ui as ui
    from ignite_mbo.mlflow_store import experiment_id

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    made = experiment_id(client, "race")
    assert client.get_experiment(made).tags[ui.SHARED_VIEW_TAG] == ui.shared_view()  # set as it is created
    client.delete_experiment_tag(made, ui.SHARED_VIEW_TAG)

    def raced(*args: object) -> None:
        raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: experiment_tags.key, ...")

    client.set_experiment_tag = raced  # type: ignore[method-assign]
    assert experiment_id(client, "race") == made
