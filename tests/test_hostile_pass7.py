"""Issue 18, seventh adversarial pass: what failed, one test per case.

A full disk met while writing a file names that file (and ``report --output-dir`` leaves no empty folder);
``--resume`` of a sweep whose Tune record of its trials was deleted or truncated is refused before anything
runs; MLflow's own SQL traceback on a full store is not printed beside ignite-mbo's one line.
"""

from __future__ import annotations

import errno
import logging
import pickle
from pathlib import Path

import pandas as pd
import pytest

from ignite_mbo.atomic import atomic_write
from ignite_mbo.errors import UserError, path_error
from ignite_mbo.platform.report import render


def full(partial: Path) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")  # as a failed write() says it: no file named


def test_a_full_disk_while_writing_names_the_file(tmp_path) -> None:
    with pytest.raises(OSError) as raised:
        atomic_write(tmp_path / "gain_table.md", full)
    assert raised.value.filename == str(tmp_path / "gain_table.md")
    message = path_error(raised.value)
    assert message is not None and "gain_table.md" in message and "''" not in message
    assert list(tmp_path.iterdir()) == []  # the partial file is gone
    unnamed = path_error(OSError(errno.ENOSPC, "No space left on device"))
    assert unnamed is not None and "''" not in unnamed


@pytest.mark.parametrize("existing", [False, True])
def test_a_report_that_fills_the_disk_writes_no_file_and_leaves_no_folder_it_made(existing, tmp_path,
                                                                                   monkeypatch) -> None:
    """Pass 7: the empty folder made for the report was left. Pass 19: so were the files written before the disk
    filled up (a complete gain_table.md beside no gain_table.csv), and the empty parents of a nested --output-dir."""
    from types import SimpleNamespace

    from ignite_mbo import atomic

    real, staged = atomic.stage, []

    def disk_fills_after_one_file(path: Path, write):  # type: ignore[no-untyped-def]
        if staged:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        staged.append(path)
        return real(path, write)

    report = SimpleNamespace(long=pd.DataFrame({"a": [1]}), results=pd.DataFrame())
    monkeypatch.setattr(atomic, "stage", disk_fills_after_one_file)
    monkeypatch.setattr(render, "render_markdown", lambda report: "new")
    monkeypatch.setattr(render, "render_figure", lambda report: b"")
    monkeypatch.setattr(render.reproduction, "compare", lambda results: [])
    out = tmp_path / "a" / "b" / "out"
    if existing:
        out.mkdir(parents=True)
        (out / "gain_table.md").write_text("old")
    with pytest.raises(OSError) as error:
        render.write_report(report, out)  # type: ignore[arg-type]
    assert error.value.filename == str(out / "gain_table.csv"), error.value
    if existing:
        assert [p.name for p in out.iterdir()] == ["gain_table.md"] and (out / "gain_table.md").read_text() == "old"
    else:
        assert list(tmp_path.iterdir()) == []


def test_two_writers_of_one_file_never_share_a_temp_file(tmp_path) -> None:
    """Pass 20's note: every report stages gain_table.md as the same '.gain_table.md.staged', so two reports
    written into one folder at once could rename each other's half-written file into place."""
    from ignite_mbo import atomic

    target = tmp_path / "gain_table.md"
    others = []

    def write_while_another_writer_stages(path: Path) -> None:
        others.append(atomic.stage(target, lambda other: other.write_text("the other report")))
        path.write_text("this report")

    atomic.atomic_write(target, write_while_another_writer_stages)
    assert target.read_text() == "this report"
    assert others[0].read_text() == "the other report" and others[0].parent == tmp_path


@pytest.mark.parametrize("state", [None, b"", b"{not json", b'{"trial_data": 3}'])
def test_resume_refuses_a_tune_state_without_its_record_of_trials(state, tmp_path) -> None:
    from ignite_mbo.platform.resume_files import check_saved_state

    (tmp_path / "tuner.pkl").write_bytes(b"x")
    if state is not None:
        (tmp_path / "experiment_state-2026-12-06_12-00-00.json").write_bytes(state)
    with pytest.raises(UserError, match="experiment_state"):
        check_saved_state(str(tmp_path))


def test_resume_takes_a_tune_state_with_its_record_of_trials(tmp_path) -> None:
    from ignite_mbo.platform.resume_files import check_saved_state

    (tmp_path / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    (tmp_path / "experiment_state-2026-12-06_12-00-00.json").write_text('{"trial_data": [], "runner_data": {}}')
    check_saved_state(str(tmp_path))
    check_saved_state(str(tmp_path / "never-started"))  # no tuner.pkl: a fresh Tuner, nothing to check


def test_mlflows_sql_traceback_is_not_printed_beside_our_line(tmp_path) -> None:
    from ignite_mbo import mlflow_store

    mlflow_store._client(f"sqlite:///{tmp_path}/mlflow.db")
    assert not logging.getLogger("mlflow.store.db.utils").isEnabledFor(logging.ERROR)


@pytest.mark.parametrize("space, needle", [
    ("name: tiny\ntrial: &t {task: TFBind8-Exact-v0, self: *t}\n", "write the values out"),
    ("name: ~\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n", "search_spaces/quick.yaml"),
])
def test_a_refused_space_names_a_fix(space, needle, tmp_path, monkeypatch, capsys) -> None:
    from ignite_mbo.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(space)
    assert main(["sweep", "space.yaml", "--quiet"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and needle in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]


def test_an_output_dir_given_as_a_uri_is_refused(tmp_path, monkeypatch, capsys) -> None:
    from ignite_mbo.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text("name: tiny\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent}\n")
    assert main(["sweep", "space.yaml", "--quiet", "--output-dir", f"file://{tmp_path}/out"]) == 2
    assert "is a URI" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]  # no folder named file:


def test_a_missing_sweep_record_names_a_fix_the_commands_take(tmp_path) -> None:
    from ignite_mbo.platform.record import SweepRecord

    with pytest.raises(UserError, match="run the sweep again without --resume"):
        SweepRecord.load(tmp_path)


def test_a_storage_uri_that_does_not_answer_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys,
                                                                                 design_bench_dir) -> None:
    from ignite_mbo.cli import main

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):  # nothing listens there: no other host is asked
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text("name: tiny\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent}\n")
    assert main(["sweep", "space.yaml", "--quiet", "--storage-path", "s3://no-such-bucket-xyz/ignite"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "cannot reach --storage-path" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]


@pytest.mark.parametrize("cut", ["tuner.pkl", "basic-variant-state-2026-12-06_12-00-00.json"])
def test_resume_refuses_a_tune_state_whose_pickles_were_cut_short(cut, tmp_path) -> None:
    """Pass 7's open case: a full disk cut the searcher's state short, so Tune restored 1 of 3 trials and ran it."""
    from ignite_mbo.platform.resume_files import check_saved_state, saved_state_problem

    whole = pickle.dumps({"iterators": list(range(2000))})
    (tmp_path / "experiment_state-2026-12-06_12-00-00.json").write_text('{"trial_data": [], "runner_data": {}}')
    for name in ("tuner.pkl", "basic-variant-state-2026-12-06_12-00-00.json"):
        (tmp_path / name).write_bytes(whole[:4096] if name == cut else whole)
    assert saved_state_problem(str(tmp_path)) is not None
    with pytest.raises(UserError, match=f"{cut} is cut short.*without --resume"):
        check_saved_state(str(tmp_path))
    (tmp_path / cut).write_bytes(whole)
    assert saved_state_problem(str(tmp_path)) is None


def test_resume_runs_again_the_trials_a_full_disk_failed(tmp_path) -> None:
    from ignite_mbo.platform.resume_files import failed_for_a_passing_reason

    trial = tmp_path / "grad-ascent_none_TFBind8-Exact-v0_s0_6c2a6_00000"
    trial.mkdir()
    (trial / "error.txt").write_text("Traceback ...\nValueError: a bug of the trial's own\n")
    assert not failed_for_a_passing_reason(str(tmp_path)), "a trial's own error stays an error on --resume"
    (trial / "error.txt").write_text("mlflow.exceptions.MlflowException: (sqlite3.OperationalError) database or "
                                     "disk is full\n[SQL: INSERT INTO runs ...]\n")
    assert failed_for_a_passing_reason(str(tmp_path))
    assert not failed_for_a_passing_reason("s3://bucket/sweep"), "remote storage: Tune's choice stands"


@pytest.mark.parametrize("left", [{"error.txt": b""}, {"error.txt": b"x\n", "error.pkl": b""},
                                  {"error.txt": b"x\n", "error.pkl": pickle.dumps(ValueError("bug"))[:9]}])
def test_resume_runs_again_a_trial_whose_error_files_the_full_disk_left_empty(left, tmp_path) -> None:
    """Pass 8: store, sweep folder and Tune state on one disk that filled; each failed trial's error.pkl was
    written empty, and the printed --resume died reading it back (EOFError traceback)."""
    from ignite_mbo.platform.resume_files import failed_for_a_passing_reason

    trial = tmp_path / "grad-ascent_none_TFBind8-Exact-v0_s0_ea076_00000"
    trial.mkdir()
    for name, content in left.items():
        (trial / name).write_bytes(content)
    assert failed_for_a_passing_reason(str(tmp_path))
    (trial / "error.txt").write_text("ValueError: bug\n")
    (trial / "error.pkl").write_bytes(pickle.dumps(ValueError("bug")))
    assert not failed_for_a_passing_reason(str(tmp_path)), "whole error files of a trial's own error"


def test_a_long_path_in_an_error_line_keeps_its_file_name() -> None:
    """A path too long for the line is cut in the middle: its start and the file's name stay (pytest-xdist's
    longer temporary folders cut the name off the old line, which kept only the first 80 characters)."""
    deep = "/" + "/".join(["folder"] * 60) + "/gain_table.md"
    line = path_error(OSError(errno.ENOSPC, "No space left on device", deep))
    assert line is not None and "'/folder/folder" in line and "gain_table.md'" in line, line
    assert f"({len(repr(deep)):,} characters)" in line and len(line) < 260, line
