"""The MLflow UI opens on what matters, checked in Debian's headless Chromium: the link a sweep prints
shows its trials grouped under the sweep with the score columns; a trial's metrics page puts the λ,
sharpness and loss curves first and the single-value scores after them. Screenshots go to
test-output/ui/."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from processes import answers_health, headless_chromium, page_text, wait_until_up

SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output" / "ui"
SPACE = """
name: ui_check
trial:
  task: TFBind8-Exact-v0
  baseline: grad-ascent
  fidelity: quick
  seed: 0
  baseline_options: {hidden_size: 32, epochs: 3, solver_steps: 20}
grid:
  regularizer: [none, ignite]
resources: {cpu: 1, gpu: 0}
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory, design_bench_dir):
    """The space run twice into one store (two sweeps: ui_check and ui_check-2), as a user runs it."""
    folder = tmp_path_factory.mktemp("ui")
    (folder / "space.yaml").write_text(SPACE)
    env = {**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)}
    outputs = []
    for _ in range(2):
        done = subprocess.run(["ignite-mbo", "sweep", "space.yaml", "--tracking-uri", "sqlite:///mlflow.db",
                               "--output-dir", "out", "--num-cpus", "2"],
                              cwd=folder, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
    return folder, f"sqlite:///{folder / 'mlflow.db'}", outputs


@pytest.fixture(scope="module")
def ui_server(swept, tmp_path_factory):
    """`mlflow ui` on 127.0.0.1 and a free port, stopped by its process group."""
    _, uri, _ = swept
    logs = tmp_path_factory.mktemp("ui_log") / "ui.log"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with logs.open("w") as log:
        server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", uri,
                                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(lambda: answers_health(base), server, logs, "mlflow ui", timeout_s=180)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@pytest.fixture(scope="module")
def chromium():
    with headless_chromium(2600) as driver:
        yield driver


def page_with(driver, url: str, needles: list[str], screenshot: str, timeout: float = 90) -> str:
    return page_text(driver, url, needles, SCREENSHOTS / screenshot, timeout)


@pytest.mark.slow
def test_the_printed_link_shows_runs_grouped_by_sweep_with_score_columns(swept, ui_server, chromium):
    _, uri, outputs = swept
    printed = next(line for line in outputs[-1].splitlines() if line.startswith("then open:")).split()[-1]
    assert "viewStateShareKey=" in printed
    text = page_with(chromium, printed.replace("http://127.0.0.1:5000", ui_server),
                     ["Group: ui_check-2", "Group: ui_check", "score_100th", "score_50th", "regularizer.name",
                      "grad-ascent ignite TFBind8 s0", "sweep:ui_check-2"], "1_runs_grouped_with_scores.png")
    assert "shared view" in text, "the view the sweep set up, not the user's own"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ui_check").experiment_id
    trials = client.search_runs([experiment], "tags.`ignite_mbo.kind` = 'trial'")
    sweeps = {run.info.run_id: run for run in client.search_runs([experiment], "tags.`ignite_mbo.kind` = 'sweep'")}
    assert len(trials) == 4 and len(sweeps) == 2
    for run in trials:
        parent = sweeps[run.data.tags["mlflow.parentRunId"]]
        assert run.data.tags["ignite_mbo.sweep"] == parent.data.tags["ignite_mbo.sweep"] == \
            parent.info.run_name.removeprefix("sweep:")
    scores = {f"{run.data.metrics['score_100th']:.3g}" for run in trials}
    assert any(score in text for score in scores), f"no score value {scores} in the table"


@pytest.mark.slow
def test_the_default_page_lists_one_row_per_sweep(swept, ui_server, chromium):
    _, uri, _ = swept
    experiment = MlflowClient(uri).get_experiment_by_name("ui_check").experiment_id
    text = page_with(chromium, f"{ui_server}/#/experiments/{experiment}/runs?workflowType=machine_learning",
                     ["sweep:ui_check", "sweep:ui_check-2"], "2_runs_nested_under_sweeps.png")
    assert "grad-ascent none TFBind8 s0" not in text, "trials fold under their sweep's run"


@pytest.mark.slow
def test_a_trial_page_shows_the_curves_first_and_the_scores_apart(swept, ui_server, chromium):
    _, uri, _ = swept
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ui_check").experiment_id
    trial = client.search_runs([experiment], "tags.`ignite_mbo.regularizer` = 'ignite'")[0]
    page = (f"{ui_server}/#/experiments/{experiment}/runs/{trial.info.run_id}/model-metrics"
            "?workflowType=machine_learning")
    lambda_chart, sharpness_chart = (f"grad-ascent ignite TFBind8 s0 (surrogate/{name})" for name in ("lambda", "sharpness"))
    text = page_with(chromium, page, [lambda_chart, sharpness_chart, "score_100th"], "3_trial_curves_first.png")
    header = re.search(r"Model metrics\s*\(\d+\)", text)  # the section of single-value metrics, not the tab's name
    assert header, text[:3000]
    scores_section = header.start()
    assert text.index(lambda_chart) < scores_section and text.index(sharpness_chart) < scores_section
    assert re.search(r"surrogate\s*\(\d+\)", text[:scores_section]), "the curves are a section of their own"
    section = text[scores_section:]
    assert "score_100th" in section and "surrogate/" not in section, "the single-value scores are grouped apart"
