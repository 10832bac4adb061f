"""A regularizer defined here, in the test file, with no edit anywhere else: ``ignite-mbo run`` and a sweep
find it through ``IGNITE_MBO_PLUGINS``, and its name and hyperparameter reach the CLI flags, MLflow params,
the protocol deviations, the results table and the report by themselves."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
import torch
from pydantic import Field
from torch import nn

from ignite_mbo.regularizers import CONFIGS, LossClosure, MeanPrediction, Regularizer, RegularizerSettings, num_members

HERE = Path(__file__).resolve().parent


class ScaledGradient:
    """The toy: the loss gradient times a factor; it reports the factor as each member's λ."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.members = 0

    def backward(self, model: nn.Module, loss: LossClosure, mean_prediction: MeanPrediction) -> dict[str, torch.Tensor]:
        self.members = num_members(model)
        value, _ = loss()
        (self.factor * value.sum()).backward()
        return {"loss": value.detach()}

    def lambdas(self) -> list[float]:
        return [self.factor] * self.members

    def state_dict(self) -> dict[str, list[float]]:
        return {"lambda": self.lambdas()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.members = len(state.get("lambda", []))


class ToyConfig(RegularizerSettings):
    """A toy regularizer for the extension test."""

    name: Literal["toy"] = "toy"
    factor: float = Field(1.0, gt=0, le=10, description="how much the loss gradient is scaled")

    def build(self) -> Regularizer:
        return ScaledGradient(self.factor)


def plugin_env(design_bench_dir: Path) -> dict[str, str]:
    """The environment a user sets: their module on PYTHONPATH and named in IGNITE_MBO_PLUGINS."""
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "IGNITE_MBO_PLUGINS": "test_toy_regularizer",
            "IGNITE_MBO_DATA_DIR": str(design_bench_dir), "OMP_NUM_THREADS": "1"}


def test_defining_the_class_registers_it():
    assert CONFIGS["toy"] is ToyConfig


def test_run_finds_the_plugin_and_records_its_settings(tmp_path, design_bench_dir):
    from mlflow.tracking import MlflowClient

    completed = subprocess.run(
        ["ignite-mbo", "run", "--regularizer", "toy", "--factor", "0.5", "--fidelity", "quick", "--set",
         "hidden_size=32", "--set", "epochs=1", "--set", "solver_steps=20", "--quiet", "--threads", "1",
         "--tracking-uri", "sqlite:///mlflow.db"],
        cwd=tmp_path, capture_output=True, text=True, env=plugin_env(design_bench_dir), timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["final_lambda"] == 0.5  # the toy trained the surrogate
    assert "regularizer.factor=0.5" in summary["protocol_deviations"]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("runs").experiment_id])
    assert run.data.params["regularizer.name"] == "toy" and run.data.params["regularizer.factor"] == "0.5"
    assert "regularizer.factor=0.5" in json.dumps(run.data.params | run.data.tags)


def test_help_lists_the_plugins_flag(design_bench_dir):
    completed = subprocess.run(["ignite-mbo", "run", "--help"], capture_output=True, text=True,
                               env=plugin_env(design_bench_dir), timeout=120)
    assert "--factor" in completed.stdout and "how much the loss gradient is scaled" in completed.stdout


SPACE = """
name: toy
trial:
  task: TFBind8-Exact-v0
  baseline: grad-ascent
  fidelity: quick
  baseline_options: {hidden_size: 32, epochs: 1, solver_steps: 20}
grid:
  regularizer: [none, {name: toy, factor: 0.5}]
  seed: [0, 1]
resources: {cpu: 1, gpu: 0}
"""


@pytest.mark.slow
def test_a_sweep_runs_it_on_ray_workers_and_reports_it(tmp_path, design_bench_dir):
    (tmp_path / "space.yaml").write_text(SPACE)
    completed = subprocess.run(
        ["ignite-mbo", "sweep", "space.yaml", "--tracking-uri", "sqlite:///mlflow.db", "--output-dir", "out",
         "--num-cpus", "2", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, env=plugin_env(design_bench_dir), timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = pd.read_parquet(tmp_path / "out" / "toy" / "results.parquet")
    assert set(results["status"]) == {"TERMINATED"}
    toy = results[results["regularizer"] == "toy"]
    assert len(toy) == 2 and (toy["final_lambda"] == 0.5).all()
    assert results["config.regularizer.factor"].dtype.kind == "f"  # a typed column, null for none
    assert toy["protocol_deviations"].str.contains("regularizer.factor=0.5").all()
    assert "grad-ascent + toy" in completed.stdout


def test_a_plugin_that_does_not_import_is_a_one_line_error(design_bench_dir):
    env = {**plugin_env(design_bench_dir), "IGNITE_MBO_PLUGINS": "no_such_plugin_module"}
    completed = subprocess.run(["ignite-mbo", "run", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1 and "no_such_plugin_module" in completed.stderr
