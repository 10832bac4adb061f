"""Issue 18, eighth adversarial pass: what failed, one test per case.

A hostile ``.jsonl`` of trial records (nested past Python's stack, a 5,000-digit seed, words where numbers go)
is one line naming the line; ``--resume`` against a store that lacks the sweep's run (another store put in its
place) is refused before Ray starts, naming the fix. The other cases of the pass live beside the tests of
their kind: a second signal closes the runs (``test_fault_tolerance.py``), and error files a full disk left
empty make ``--resume`` run their trials again (``test_hostile_pass7.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ignite_mbo import mlflow_store
from ignite_mbo.errors import UserError
from ignite_mbo.platform.plan import plan_sweep
from ignite_mbo.platform.record import SweepRecord
from ignite_mbo.platform.report.inputs import read_records
from ignite_mbo.platform.spaces import load_spec

RECORD = {"task": "TFBind8-Exact-v0", "baseline": "grad-ascent", "regularizer": "none", "seed": 0,
          "score_100th": 0.5, "score_80th": 0.4, "score_50th": 0.3, "regularizer_affects_search": True}


def line(**change: object) -> str:
    return json.dumps({**RECORD, **change})


@pytest.mark.parametrize(("text", "needle"), [
    ("[" * 100_000, "nested too deep"),
    ('{"a":' * 3000 + "1" + "}" * 3000, "nested too deep"),
    (line()[:-1] + ', "x": ' + "9" * 5000 + "}", "not JSON a record can hold"),
    (line(seed="x"), "seed: Input should be a valid integer"),
    (line(seed=True), "seed: Input should be a valid integer"),
    (line(seed=-5), "seed: Input should be greater than or equal to 0"),
    (line(score_100th="high"), "score_100th: Input should be a valid number"),
    (line(options=[1, 2]), "options: Input should be a valid dictionary"),
    (line(task={"a": 1}), "task: Input should be a valid string"),
    (line(wall_time_s=-1.0), "wall_time_s: Input should be greater than or equal to 0"),
    (line()[:-1] + ', "cpu_time_s": Infinity}', "cannot be infinite"),
])
def test_a_hostile_record_is_one_line_naming_its_line(text: str, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    path.write_text(line() + "\n" + text + "\n")
    with pytest.raises(UserError, match=f"trials.jsonl:2.*{needle}.*one trial record") as refused:
        read_records(path)
    assert "\n" not in str(refused.value)


def test_a_record_with_null_or_nan_scores_of_a_failed_trial_is_read(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    path.write_text(line() + "\n" + line(seed=1, score_100th=None) + "\n" + line(seed=2)[:-1] + ', "score_mean": NaN}\n')
    assert len(read_records(path)) == 3


def test_resume_against_a_store_without_the_sweeps_run_names_the_fix(tmp_path: Path) -> None:
    """The sweep's mlflow.db replaced by another valid MLflow store: one line before Ray starts (it said
    "Run with id=… not found" after Ray started, with no fix)."""
    space = tmp_path / "space.yaml"
    space.write_text("name: s\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_store.start_sweep_run(uri, "other", "sweep:other", {})  # another sweep's store
    folder = tmp_path / "out" / "s"
    folder.mkdir(parents=True)
    SweepRecord(spec=load_spec(space).model_dump(mode="json"), tracking_uri=uri, experiment="s",
                parent_run_id="0" * 32, storage_path=str(folder.parent), experiment_path=str(folder)).save(folder)
    with pytest.raises(UserError, match="run 0{32} is not in sqlite:.*resume with the store the sweep started with"):
        plan_sweep(space, output_dir=tmp_path / "out", resume=True)


def test_a_data_dir_that_links_to_itself_names_the_loop_not_permissions(tmp_path: Path, capsys) -> None:
    from ignite_mbo.cli import main

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert main(["data", "verify", "--task", "tf_bind_8", "--data-dir", str(tmp_path / "loop")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "symbolic links that loop" in last and "make the" not in last, last


def test_an_existing_folder_that_is_not_writable_is_not_said_to_need_creating(tmp_path: Path, monkeypatch) -> None:
    import os

    from ignite_mbo.platform.checks import writable_ancestor

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as on a read-only mount (root ignores modes)
    with pytest.raises(UserError, match=r"is not writable; pick a path you can write") as refused:
        writable_ancestor(tmp_path)
    assert "cannot be created" not in str(refused.value)
    with pytest.raises(UserError, match=r"is not writable, so .*/new cannot be created"):
        writable_ancestor(tmp_path / "new")


@pytest.mark.parametrize("seed", ["abc", "1.5", "", "-1", "9" * 5000, None])
def test_rerun_of_a_record_with_a_bad_or_missing_seed_is_one_line(seed: str | None) -> None:
    """Pass 9: a seed param edited to a non-integer gave a traceback; a missing one silently became seed 0."""
    from ignite_mbo.provenance import config_from_params

    params = {"task": "TFBind8-Exact-v0", "baseline": "grad-ascent"} | ({} if seed is None else {"seed": seed})
    with pytest.raises(UserError, match="seed") as refused:
        config_from_params(params)
    assert "\n" not in str(refused.value)
    assert config_from_params({**params, "seed": "3", "regularizer.name": "none"})[0].seed == 3


def test_a_sweep_record_pointing_at_another_experiments_run_is_not_taken_as_its_own(tmp_path: Path) -> None:
    """Pass 9: sweep.json edited to name another sweep's run (another experiment) or a trial's run of its own:
    `report` wrote its report into that run. Both `report` and `--resume` now ask for a sweep's run in the record's
    own experiment."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    other = mlflow_store.start_sweep_run(uri, "other", "sweep:other", {})
    assert mlflow_store.is_sweep_run(uri, other, "other")
    assert not mlflow_store.is_sweep_run(uri, other, "s")
    client = MlflowClient(uri)
    trial = client.create_run(client.get_run(other).info.experiment_id, tags={f"{mlflow_store.TAG_PREFIX}kind": "trial"})
    assert not mlflow_store.is_sweep_run(uri, trial.info.run_id, "other")
