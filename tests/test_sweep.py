"""A 2-trial Ray Tune sweep into a temporary sqlite MLflow store, then the report on it."""

from __future__ import annotations

import os
import subprocess

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

SPACE = """
name: two_trials
trial:
  task: TFBind8-Exact-v0
  baseline: grad-ascent
  fidelity: quick
  seed: 0
  baseline_options: {hidden_size: 32, epochs: 2}
grid:
  regularizer: [none, ignite]
resources: {cpu: 1, gpu: 0}
"""


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, design_bench_dir):
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "space.yaml").write_text(SPACE)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)}
    completed = subprocess.run(
        ["ignite-mbo", "sweep", "space.yaml", "--tracking-uri", uri, "--output-dir", "out", "--num-cpus", "2"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return folder, uri, completed.stdout


def test_every_trial_is_an_mlflow_run_with_params_tags_curves_and_artifacts(finished_sweep):
    folder, uri, _ = finished_sweep
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["two_trials"], filter_string="tags.`ignite_mbo.kind` = 'trial'")
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    assert set(runs["tags.ignite_mbo.regularizer"]) == {"none", "ignite"}
    assert set(runs["tags.ignite_mbo.task"]) == {"TFBind8-Exact-v0"}
    assert set(runs["params.regularizer.name"]) == {"none", "ignite"}
    assert (runs["metrics.num_candidates"] == 128).all()
    assert runs["metrics.score_100th"].between(0, 1).all()
    sweep_runs = mlflow.search_runs(experiment_names=["two_trials"], filter_string="tags.`ignite_mbo.kind` = 'sweep'")
    assert len(sweep_runs) == 1
    assert set(runs["tags.mlflow.parentRunId"]) == {sweep_runs["run_id"].iloc[0]}

    client = MlflowClient(uri)
    ignite = runs[runs["tags.ignite_mbo.regularizer"] == "ignite"]["run_id"].iloc[0]
    lambdas = client.get_metric_history(ignite, "lambda")
    assert [m.step for m in lambdas] == [0, 1]  # one point per epoch
    assert len(client.get_metric_history(ignite, "val_rank_corr")) == 2
    artifacts = {a.path for a in client.list_artifacts(ignite)}
    assert {"candidates.parquet", "surrogate_0.pt", "training_curves.png", "summary.json"} <= artifacts
    candidates = pd.read_parquet(client.download_artifacts(ignite, "candidates.parquet", str(folder)))
    assert len(candidates) == 128 and {"x0", "x7", "score_normalized"} <= set(candidates.columns)


def test_results_table_and_printed_gain_table(finished_sweep):
    folder, _, stdout = finished_sweep
    table = pd.read_parquet(folder / "out" / "two_trials" / "results.parquet")
    assert len(table) == 2 and set(table["status"]) == {"TERMINATED"}
    assert {"task", "baseline", "regularizer", "seed", "score_100th", "final_lambda", "mlflow_run_id"} <= set(table.columns)
    assert "### 100th percentile" in stdout and "grad-ascent + ignite" in stdout


def test_report_command_on_the_sweep(finished_sweep):
    folder, uri, _ = finished_sweep
    completed = subprocess.run(["ignite-mbo", "report", "out/two_trials"], cwd=folder,
                               capture_output=True, text=True, check=True)
    assert "| grad-ascent + none |" in completed.stdout
    for name in ("gain_table.md", "gain_table.csv", "gain_table.png"):
        assert (folder / "out" / "two_trials" / name).is_file()
    mlflow.set_tracking_uri(uri)
    reports = mlflow.search_runs(experiment_names=["two_trials"], filter_string="tags.`ignite_mbo.kind` = 'report'")
    assert len(reports) >= 1
