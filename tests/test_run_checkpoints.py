"""`ignite-mbo run --checkpoints DIR`: a run stopped mid-fit goes on from its last save when the same command is run
again, with the scores and the MLflow record of an unbroken run; what it finds there is checked first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ignite_mbo import checkpoints
from ignite_mbo.cli import main

TRIAL = ["run", "--fidelity", "quick", "--quiet", "--threads", "1", "--seed", "3", "--set", "hidden_size=32",
         "--set", "epochs=6", "--set", "solver_steps=20", "--set", "batch_size=512"]


def stop_after_saving_epoch(monkeypatch, epoch: int) -> None:
    """Save between every two epochs, and stop the process (Ctrl-C) once epoch ``epoch`` is saved."""
    save = checkpoints._PartialFit.save

    def save_then_stop(self, state):
        save(self, state)
        if self.store.state["partial"].get(self.name, {}).get("epochs_done") == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints._PartialFit, "save", save_then_stop)


def summary(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def record(uri: str, status: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric's history in the store's one run with ``status``."""
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("runs").experiment_id], f"status = '{status}'")
    return {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics if key not in ("wall_time_s", "cpu_time_s")}  # (the clocks differ)


def test_a_run_stopped_mid_fit_goes_on_from_its_last_save_as_if_never_stopped(tmp_path, monkeypatch, capsys,
                                                                              design_bench_dir):
    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    monkeypatch.setattr(checkpoints, "PARTIAL_SAVE_EVERY_S", 0.0)
    unbroken_uri = f"sqlite:///{tmp_path / 'unbroken.db'}"
    assert main([*TRIAL, "--tracking-uri", unbroken_uri]) == 0
    unbroken = summary(capsys.readouterr().out)

    uri, saves = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "saves"
    command = [*TRIAL, "--tracking-uri", uri, "--checkpoints", str(saves)]
    with monkeypatch.context() as stopping:
        stop_after_saving_epoch(stopping, 3)
        assert main(command) == 130
    err = capsys.readouterr().err.strip()
    assert err == "ignite-mbo run: interrupted (stopped by SIGINT); the same command goes on from the last save", err
    (folder,) = saves.iterdir()
    state = json.loads((folder / "state.json").read_text())
    assert [entry["epochs_done"] for entry in state["partial"].values()] == [3]

    assert main(command) == 0
    out, err = capsys.readouterr()
    assert err.startswith(f"ignite-mbo run: going on from {folder} (0 surrogate fit(s) finished, fit ") and \
        "at epoch 3;" in err, err
    resumed = summary(out)
    for score in ("score_100th", "score_80th", "score_50th", "score_mean", "final_lambda"):
        assert resumed[score] == unbroken[score], score
    assert resumed["cpu_time_s"] > 0
    assert not folder.exists(), "a finished trial's checkpoints are removed"
    assert record(uri, "FINISHED") == record(unbroken_uri, "FINISHED"), "the same curves, each epoch logged once"
    assert record(uri, "KILLED"), "the stopped attempt's run stays, KILLED"


def stopped_folder(tmp_path: Path, monkeypatch, capsys) -> tuple[list[str], Path]:
    """A run stopped after its fit's first epoch was saved: its command and its trial folder."""
    monkeypatch.setattr(checkpoints, "PARTIAL_SAVE_EVERY_S", 0.0)
    command = [*TRIAL, "--checkpoints", str(tmp_path / "saves")]
    with monkeypatch.context() as stopping:
        stop_after_saving_epoch(stopping, 1)
        assert main(command) == 130
    capsys.readouterr()
    (folder,) = (tmp_path / "saves").iterdir()
    return command, folder


@pytest.mark.parametrize(("state", "problem"), [
    ("not json", "is not a checkpoint state ignite-mbo wrote (the file: Invalid JSON"),
    ("[]", "is not a checkpoint state ignite-mbo wrote (the file: Input should be an object"),
    ('{"partial": {"fit": {"file": "../../x.pt", "fingerprint": 1, "regularizer": {}, "history": [], "logged": [],'
     ' "epochs_done": 1}}}', "partial.fit.file: Value error, '../../x.pt' is not a file name in the folder"),
    ('{"surrogates": 5}', "surrogates: Input should be an object"),
])
def test_a_state_ignite_mbo_did_not_write_is_refused_in_one_line_before_anything_is_written(
        state, problem, tmp_path, monkeypatch, capsys, design_bench_dir):
    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    command, folder = stopped_folder(tmp_path, monkeypatch, capsys)
    (folder / "state.json").write_text(state)
    store = tmp_path / "mlflow.db"
    assert main([*command, "--tracking-uri", f"sqlite:///{store}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and problem in err and f"delete the folder '{folder}' to start the trial over" in err, err
    assert not store.exists(), "refused before the MLflow run was made"


def test_a_truncated_save_fails_the_run_in_one_line(tmp_path, monkeypatch, capsys, design_bench_dir):
    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    command, folder = stopped_folder(tmp_path, monkeypatch, capsys)
    (saved,) = folder.glob("*.partial.pt")
    saved.write_bytes(saved.read_bytes()[:100])
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("ignite-mbo run: going on from"), err
    assert err[1].startswith(f"ignite-mbo run: error: the checkpoint file '{saved}' cannot be read"), err
    assert f"delete the folder '{folder}'" in err[1], err


def test_checkpoints_in_a_file_is_refused_in_one_line(tmp_path, monkeypatch, capsys, design_bench_dir):
    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    (tmp_path / "notes.txt").write_text("x")
    assert main([*TRIAL, "--checkpoints", str(tmp_path / "notes.txt" / "saves")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ignite-mbo run: error: --checkpoints: '{tmp_path / 'notes.txt'}' is not a folder; pick a folder "
                   "this user can write to"), err
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_a_second_run_of_a_trial_that_is_running_is_refused_in_one_line(tmp_path, monkeypatch, capsys,
                                                                         design_bench_dir):
    import fcntl

    monkeypatch.setenv("IGNITE_MBO_DATA_DIR", str(design_bench_dir))
    command, folder = stopped_folder(tmp_path, monkeypatch, capsys)
    with (folder / "lock").open("a") as running:  # as the first run holds it
        fcntl.flock(running, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"ignite-mbo run: error: another ignite-mbo run is running this trial from '{folder}'; wait "
                       "for it to end, or stop it and run this command again"), err
    assert main(command) == 0, "once it ends, the same command goes on"
