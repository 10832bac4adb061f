"""The GPU path through Ray Tune, on a CPU: a local Ray that declares 2 GPUs (no CUDA) packs a space with
``gpu: 0.25`` per trial 8 at once, and Ray tells each trial its own GPU id (4 trials per id)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

SPACE = """
name: gpu_packing
trial:
  task: TFBind8-Exact-v0
  baseline: grad-ascent
  fidelity: quick
  regularizer: none
  baseline_options: {hidden_size: 16, epochs: 40, batch_size: 4096, solver_steps: 10}
grid:
  seed: [0, 1, 2, 3, 4, 5, 6, 7]
resources: {cpu: 0.25, gpu: 0.25}
"""


@pytest.mark.slow
def test_eight_quarter_gpu_trials_run_at_once_each_told_its_gpu(tmp_path, monkeypatch, design_bench_dir):
    import ray
    from ray import tune

    from ignite_mbo.platform import sweep

    peak = {"running": 0}

    class CountRunning(sweep.NonFiniteNoRetry):  # the driver's own callback, plus a count of running trials
        def count(self, trials: list[Any], trial: Any) -> None:
            running = 1 + sum(t.status == "RUNNING" for t in trials if t is not trial)  # ``trial`` runs
            peak["running"] = max(peak["running"], running)

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.count(trials, trial)

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            super().on_trial_result(iteration, trials, trial, result, **info)
            self.count(trials, trial)

    assert issubclass(CountRunning, tune.Callback)
    monkeypatch.setattr(sweep, "NonFiniteNoRetry", CountRunning)
    (tmp_path / "space.yaml").write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        assert ray.cluster_resources().get("GPU") == 2
        outcome = sweep.run_sweep(tmp_path / "space.yaml", tracking_uri=uri, output_dir=tmp_path / "out",
                                  data_dir=str(design_bench_dir), quiet=True)
    finally:
        ray.shutdown()

    assert outcome.num_trials == 8 and outcome.num_errors == 0, outcome.errors
    assert peak["running"] == 8, f"at most {peak['running']} trials ran at once"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("gpu_packing").experiment_id
    runs = client.search_runs([experiment], "tags.`ignite_mbo.kind` = 'trial'")
    assert len(runs) == 8 and {run.info.status for run in runs} == {"FINISHED"}
    gpu_ids = [run.data.tags["ignite_mbo.gpu_ids"] for run in runs]
    assert Counter(gpu_ids) == {"0": 4, "1": 4}, gpu_ids
    assert {run.data.tags["ignite_mbo.device"] for run in runs} == {"cpu"}, "no CUDA here: the trials fall back to CPU"
