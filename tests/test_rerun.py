"""Reproducible from the record: a trial's MLflow run and summary.json hold its fully resolved settings and the
versions it ran with, and `ignite-mbo rerun RUN_ID` repeats it from that record alone with the same scores."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ignite_mbo.cli import main
from ignite_mbo.config import TrialConfig
from ignite_mbo.provenance import config_from_params, record_params

TRIAL = ["--task", "TFBind8-Exact-v0", "--baseline", "grad-ascent", "--regularizer", "ignite", "--seed", "3",
         "--fidelity", "quick", "--epsilon", "0.05", "--set", "hidden_size=16", "--set", "epochs=2",
         "--set", "solver_steps=10", "--set", "learning_rate=1e-05", "--threads", "1", "--quiet"]


def test_params_round_trip_to_the_same_config():
    config = TrialConfig.parse({"baseline": "reinforce", "regularizer": {"name": "ignite2", "rho": 0.1},
                                "fidelity": "quick", "seed": 7, "baseline_options": {"per_design_credit": True,
                                                                                     "learning_rate": 1e-5}})
    params = {key: str(value) for key, value in record_params(config).items()}
    assert params["baseline.epochs"] == str(config.baseline_settings().epochs), "effective settings are recorded"
    assert params["baseline.per_design_credit"] == "True" and params["task.max_samples"] == "None"
    rebuilt, changed = config_from_params(params)
    assert changed == []
    assert rebuilt.baseline_settings() == config.baseline_settings()
    assert rebuilt.regularizer == config.regularizer and rebuilt.seed == 7 and rebuilt.fidelity == "quick"


def test_a_changed_default_is_pinned_to_the_recorded_value():
    params = {key: str(value) for key, value in record_params(TrialConfig.parse({"fidelity": "quick"})).items()}
    params["baseline.epochs"] = "3"  # as if the code's quick default had changed since the run
    rebuilt, changed = config_from_params(params)
    assert rebuilt.baseline_settings().epochs == 3 and changed == ["pinned to the recorded value: epochs: recorded 3, now 10"]


def test_rerun_from_the_record_alone_gives_the_same_scores(tmp_path, capsys, monkeypatch, design_bench_dir):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["run", *TRIAL, "--tracking-uri", uri, "--data-dir", str(design_bench_dir)]) == 0
    original = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("runs").experiment_id])
    assert run.data.params["baseline.hidden_size"] == "16" and run.data.params["baseline.batch_size"] == "128"
    assert run.data.params["regularizer.epsilon"] == "0.05" and run.data.params["baseline.learning_rate"] == "1e-05"
    tags = run.data.tags
    assert tags["ignite_mbo.torch_version"] and tags["ignite_mbo.ray_version"] and tags["ignite_mbo.mlflow_version"]
    assert tags["ignite_mbo.version"] and tags["ignite_mbo.git_commit"]
    downloaded = client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path))
    summary = json.loads(Path(downloaded).read_text())
    assert summary["params"]["baseline.epochs"] == 2 and summary["params"]["baseline.hidden_size"] == 16
    assert summary["tags"]["ignite_mbo.git_commit"] == tags["ignite_mbo.git_commit"]

    code = main(["rerun", run.info.run_id, "--tracking-uri", uri, "--data-dir", str(design_bench_dir),
                 "--threads", "1", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "same scores as the record" in out
    again = json.loads(out.strip().splitlines()[-1])
    for name in ("score_100th", "score_80th", "score_50th"):
        assert again[name] == pytest.approx(original[name], rel=1e-12, abs=1e-12)
    rebuilt, given = TrialConfig.parse(again["config"]), TrialConfig.parse(original["config"])
    assert rebuilt.baseline_settings() == given.baseline_settings()
    assert (rebuilt.regularizer, rebuilt.seed, rebuilt.task) == (given.regularizer, given.seed, given.task)

    with read_only(tmp_path) as mounted:  # pass 9: rerun only reads the store, yet refused a read-only one
        if mounted:
            assert main(["rerun", run.info.run_id, "--tracking-uri", uri, "--data-dir", str(design_bench_dir),
                         "--threads", "1", "--quiet"]) == 0
            assert "same scores as the record" in capsys.readouterr().out


@contextmanager
def read_only(folder: Path) -> Iterator[bool]:
    """``folder`` (the store and its artifacts) made read-only in place by a bind mount, where mounting is allowed."""
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode != 0:
        yield False
        return
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
        yield True
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_rerun_of_an_unknown_run_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # an empty store
    capsys.readouterr()  # MLflow's own "Creating initial MLflow database tables" lines
    assert main(["rerun", "0123456789abcdef", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no run '0123456789abcdef'" in err


def test_spaces_lists_every_shipped_space(capsys):
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    assert "quick.yaml" in out and "paper_table.yaml" in out
    (quick,) = [line for line in out.splitlines() if line.startswith("quick.yaml")]
    assert quick.split()[1] == "12" and "quick fidelity" in quick
