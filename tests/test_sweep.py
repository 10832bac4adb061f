"""A 2-trial Ray Tune sweep into a temporary sqlite MLflow store, run as a user runs it; its console,
its MLflow records, the report on it, and the same space run again in the same folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from processes import answers_health, headless_chromium, page_text, wait_until_up

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
        ["ignite-mbo", "sweep", "space.yaml", "--tracking-uri", "sqlite:///mlflow.db", "--output-dir", "out",
         "--num-cpus", "2"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return folder, uri, completed.stdout, completed.stderr


@pytest.mark.slow
def test_every_trial_is_an_mlflow_run_with_params_tags_curves_and_artifacts(finished_sweep):
    folder, uri, _, _ = finished_sweep
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
    assert set(runs["tags.ignite_mbo.sweep_run_id"]) == {sweep_runs["run_id"].iloc[0]}

    client = MlflowClient(uri)
    ignite = runs[runs["tags.ignite_mbo.regularizer"] == "ignite"]["run_id"].iloc[0]
    lambdas = client.get_metric_history(ignite, "surrogate/lambda")
    assert [m.step for m in lambdas] == [0, 1]  # one point per epoch
    assert len(client.get_metric_history(ignite, "surrogate/val_rank_corr")) == 2
    artifacts = {a.path for a in client.list_artifacts(ignite)}
    assert {"candidates.parquet", "surrogate_0.pt", "training_curves.png", "summary.json"} <= artifacts
    candidates = pd.read_parquet(client.download_artifacts(ignite, "candidates.parquet", str(folder)))
    assert len(candidates) == 128 and {"x0", "x7", "score_normalized"} <= set(candidates.columns)


@pytest.mark.slow
def test_results_table_and_printed_gain_table(finished_sweep):
    folder, _, stdout, _ = finished_sweep
    table = pd.read_parquet(folder / "out" / "two_trials" / "results.parquet")
    assert len(table) == 2 and set(table["status"]) == {"TERMINATED"}
    assert {"task", "baseline", "regularizer", "seed", "score_100th", "final_lambda", "mlflow_run_id"} <= set(table.columns)
    assert (table["cpu_time_s"] > 0).all() and (table["wall_time_s"] > 0).all()  # the cost claim reads CPU time
    schema = pq.read_schema(folder / "out" / "two_trials" / "results.parquet")  # typed, as the trial config
    assert schema.field("config.seed").type == pa.int64() and schema.field("config.regularizer.epsilon").type == pa.float64()
    assert schema.field("config.regularizer.project_lambda").type == pa.bool_()
    assert schema.field("config.baseline_options.epochs").type == pa.int64()
    assert "### 100th percentile" in stdout and "grad-ascent + ignite" in stdout


@pytest.mark.slow
def test_the_console_is_one_table_then_where_everything_went(finished_sweep):
    folder, uri, stdout, stderr = finished_sweep
    lines = stdout.splitlines()
    assert lines[0].split() == ["baseline", "regularizer", "task", "seed", "status", "epochs", "score_100th"]
    rows = [line.split() for line in lines[2:4]]
    assert sorted(row[1] for row in rows) == ["ignite", "none"]
    assert all(row[0] == "grad-ascent" and row[2] == "TFBind8" and row[4] == "finished" and row[5] == "2"
               for row in rows)
    experiment_id = MlflowClient(uri).get_experiment_by_name("two_trials").experiment_id
    assert lines[-5:] == [
        f"MLflow store: {uri}",
        f"results:      {folder / 'out' / 'two_trials' / 'results.parquet'}",
        f"report:       {folder / 'out' / 'two_trials' / 'gain_table.md'}",
        f"look at it:   mlflow ui --backend-store-uri {uri}",
        f"then open:    http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        "&viewStateShareKey=ignite_mbo_scores",
    ]
    noise = ("TensorBoard", "tensorboard", "auth", "Checkpoint successfully", "Traceback", "Exception ignored",
             "╭", "Trial status")
    assert not [word for word in noise if word in stdout + stderr], stdout + stderr
    assert lines[4:6] == ["", "## IGNITE gain report"], "after the table, the report"
    assert len(lines) < 150, "a short console (the report is most of it), not hundreds of lines of Ray's noise"


@pytest.mark.slow
def test_the_mlflow_ui_opens_on_distinct_runs_and_the_parent_holds_the_report(finished_sweep):
    folder, uri, _, _ = finished_sweep
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("two_trials")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development", "the runs view, not GenAI"
    assert experiment.artifact_location == (folder / "mlartifacts" / "two_trials").as_uri()
    trials = client.search_runs([experiment.experiment_id], "tags.`ignite_mbo.kind` = 'trial'")
    assert sorted(run.info.run_name for run in trials) == ["grad-ascent ignite TFBind8 s0",
                                                           "grad-ascent none TFBind8 s0"]
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`ignite_mbo.kind` = 'sweep'")
    assert parent.info.run_name == "sweep:two_trials" and parent.info.status == "FINISHED"
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/gain_table.md", "report/gain_table.csv", "report/gain_table.png",
            "report/reproduction_check.csv"} <= report


@pytest.mark.slow
def test_report_command_replaces_the_parent_runs_report(finished_sweep):
    folder, uri, _, _ = finished_sweep
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("two_trials").experiment_id
    before = {run.info.run_id for run in client.search_runs([experiment_id])}
    for _ in range(2):
        completed = subprocess.run(["ignite-mbo", "report", "out/two_trials"], cwd=folder,
                                   capture_output=True, text=True, check=True)
    assert "| grad-ascent + none" in completed.stdout
    assert "Reproduction check" in completed.stdout and "sign-flip p" in completed.stdout
    for name in ("gain_table.md", "gain_table.csv", "gain_table.png"):
        assert (folder / "out" / "two_trials" / name).is_file()
    assert {run.info.run_id for run in client.search_runs([experiment_id])} == before, "no report runs added"
    (parent,) = client.search_runs([experiment_id], "tags.`ignite_mbo.kind` = 'sweep'")
    logged = client.download_artifacts(parent.info.run_id, "report/gain_table.md", str(folder / "dl"))
    assert Path(logged).read_text() == (folder / "out" / "two_trials" / "gain_table.md").read_text()


@pytest.mark.slow
def test_report_without_its_mlflow_store_creates_none(finished_sweep, tmp_path):
    folder, _, _, _ = finished_sweep
    copy = tmp_path / "copy"
    shutil.copytree(folder / "out" / "two_trials", copy / "two_trials")
    record = json.loads((copy / "two_trials" / "sweep.json").read_text())
    record["tracking_uri"] = f"sqlite:///{copy / 'gone.db'}"
    (copy / "two_trials" / "sweep.json").write_text(json.dumps(record))
    completed = subprocess.run(["ignite-mbo", "report", str(copy / "two_trials")], capture_output=True, text=True)
    assert completed.returncode == 2 and "no MLflow store at" in completed.stderr and "--no-mlflow" in completed.stderr
    assert not (copy / "gone.db").exists()
    completed = subprocess.run(["ignite-mbo", "report", str(copy / "two_trials"), "--no-mlflow"],
                               capture_output=True, text=True)
    assert completed.returncode == 0 and not (copy / "gone.db").exists()


# ---- the MLflow UI in a real browser -----------------------------------------------------------------

SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output" / "browser"


@pytest.fixture
def mlflow_ui(finished_sweep, tmp_path):
    """`mlflow ui` over the finished sweep's store, on 127.0.0.1 and a free port; stopped by its process group."""
    import signal
    import socket
    import sys

    _, uri, _, _ = finished_sweep
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    with (tmp_path / "ui.log").open("w") as log:
        server = subprocess.Popen([str(mlflow_bin), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                                   "--port", str(port), "--workers", "1"],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(lambda: answers_health(base), server, tmp_path / "ui.log", "mlflow ui", timeout_s=90)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@pytest.fixture
def browser():
    with headless_chromium(2400) as driver:
        yield driver


def page_text_with(driver, url: str, needles: list[str], screenshot: str, timeout: float = 60) -> str:
    return page_text(driver, url, needles, SCREENSHOTS / screenshot, timeout)


@pytest.mark.slow
def test_the_mlflow_ui_in_a_browser_shows_runs_curves_and_the_report(finished_sweep, mlflow_ui, browser):
    _, uri, stdout, _ = finished_sweep
    printed = next(line for line in stdout.splitlines() if line.startswith("then open:")).split()[-1]
    experiment_page = printed.replace("http://127.0.0.1:5000", mlflow_ui)  # the URL the sweep printed
    text = page_text_with(browser, experiment_page, ["grad-ascent none TFBind8 s0", "grad-ascent ignite TFBind8 s0",
                                                     "sweep:two_trials"], "1_experiment_runs.png")
    assert "Runs" in text and "No data available" not in text, "the runs table, not the GenAI overview"

    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("two_trials").experiment_id
    (trial,) = client.search_runs([experiment_id], "tags.`ignite_mbo.regularizer` = 'ignite'")
    run_page = f"{mlflow_ui}/#/experiments/{experiment_id}/runs/{trial.info.run_id}/model-metrics?workflowType=machine_learning"
    text = page_text_with(browser, run_page, ["grad-ascent ignite TFBind8 s0 (surrogate/lambda)",
                                              "grad-ascent ignite TFBind8 s0 (surrogate/sharpness)"], "2_trial_charts.png")

    (parent,) = client.search_runs([experiment_id], "tags.`ignite_mbo.kind` = 'sweep'")
    artifacts_page = (f"{mlflow_ui}/#/experiments/{experiment_id}/runs/{parent.info.run_id}/artifacts/"
                      "report/gain_table.md?workflowType=machine_learning")
    page_text_with(browser, artifacts_page, ["gain_table.md", "gain_table.png", "IGNITE gain report",
                                             "grad-ascent + ignite"], "3_parent_report_artifacts.png")
