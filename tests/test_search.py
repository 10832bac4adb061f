"""Search spaces with Tune distributions, search algorithms, schedulers and explicit objectives; the
sensitivity study's space and report; one Optuna + ASHA sweep end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ignite_mbo.cli import main
from ignite_mbo.errors import UserError
from ignite_mbo.platform.spaces import OBJECTIVES, apply_overrides, load_spec, parse_spec
from ignite_mbo.trainables.params import carried, trial_config

from processes import kill_marked

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"
BASE = {"name": "s", "trial": {"task": "TFBind8-Exact-v0", "baseline": "grad-ascent", "fidelity": "quick"}}


def spec(**fields):
    return parse_spec({**BASE, **fields})


# ---- the YAML format -----------------------------------------------------------------------------

def test_existing_spaces_load_unchanged():
    quick = load_spec(SPACES / "quick.yaml")
    assert len(quick.trials()) == 12 and quick.search_alg is None and quick.objective is None
    assert quick.trials()[0].regularizer.name == "none"
    paper = load_spec(SPACES / "paper_ga.yaml")
    assert len(paper.trials()) == 96 and paper.resources.gpu == 0.5  # two per GPU: measured, see the YAML


def test_sensitivity_space_is_a_grid_over_epsilon_and_lambda_lr_for_ga_and_coms_on_tf_bind_10():
    sensitivity = load_spec(SPACES / "sensitivity.yaml")
    configs = sensitivity.trials()
    assert {c.task for c in configs} == {"TFBind10-Exact-v0"} and {c.baseline for c in configs} == {"grad-ascent", "coms"}
    ignite = [c for c in configs if c.regularizer.name == "ignite"]
    none = [c for c in configs if c.regularizer.name == "none"]
    assert len(none) == 2 * 4, "one reference per baseline and seed"
    assert len(ignite) == 2 * 4 * 5 * 3
    assert len({c.regularizer.epsilon for c in ignite}) == 5 and len({c.regularizer.lambda_lr for c in ignite}) == 3
    assert sensitivity.report.sensitivity == ["epsilon", "lambda_lr"]


def test_variants_are_a_union_of_sub_grids_without_duplicates():
    space = spec(grid={"seed": [0, 1]}, variants=[
        {"regularizer": ["none"]},
        {"regularizer": ["ignite"], "regularizer.epsilon": [0.1, 0.2]},
        {"regularizer": ["ignite"], "regularizer.epsilon": [0.2]},  # already there
    ])
    configs = space.trials()
    assert len(configs) == 2 * (1 + 2)
    assert {(c.regularizer.name, getattr(c.regularizer, "epsilon", None)) for c in configs} == {
        ("none", None), ("ignite", 0.1), ("ignite", 0.2)}


def test_distributions_become_tune_domains_and_resolve_into_trial_configs():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = spec(trial={**BASE["trial"], "regularizer": "ignite"}, search={
        "regularizer.epsilon": {"loguniform": [0.01, 1.0]},
        "regularizer.lambda_lr": {"choice": [0.0001, 0.001]},
        "baseline_options.epochs": {"randint": [1, 4]},
    }, num_samples=3)
    domains = space.search_domains()
    assert isinstance(domains["regularizer.epsilon"], Float) and isinstance(domains["regularizer.lambda_lr"], Categorical)
    assert isinstance(domains["baseline_options.epochs"], Integer)
    trials = space.trials()
    dump = carried(trials[0])
    params = {"trial": dump, "search": {"regularizer.epsilon": np.float64(0.3), "regularizer.lambda_lr": 0.01,
                                        "baseline_options.epochs": np.int64(2)}}
    resolved = trial_config(params, trials)
    assert resolved.regularizer.name == "ignite"
    assert (resolved.regularizer.epsilon, resolved.regularizer.lambda_lr) == (0.3, 0.01)
    assert resolved.baseline_options == {"epochs": 2} and type(resolved.baseline_options["epochs"]) is int
    assert dump == carried(trials[0]), "the carried grid point itself is not modified"


def test_search_setup_grid_random_and_optuna():
    from ray.tune.search import Repeater

    from ignite_mbo.platform.tuner import search_setup

    grid_only = spec(grid={"seed": [0, 1, 2]})
    param_space, search_alg, num_samples, scheduler = search_setup(grid_only, grid_only.trials())
    assert set(param_space) == {"trial"} and search_alg is None and num_samples == 1 and scheduler is None
    assert param_space["trial"] == {"grid_search": [carried(c) for c in grid_only.trials()]}

    optuna = spec(trial={**BASE["trial"], "regularizer": "ignite"}, grid={"seed": [0, 1]},
                  search={"regularizer.epsilon": {"uniform": [0.01, 0.5]}}, num_samples=5,
                  search_alg={"name": "optuna", "seed": 3}, scheduler={"name": "asha", "grace_period": 2},
                  objective="val_loss")
    grid = optuna.trials()
    param_space, search_alg, num_samples, scheduler = search_setup(optuna, grid)
    assert isinstance(search_alg, Repeater) and search_alg.repeat == 2, "each suggestion runs on every grid point"
    assert num_samples == 10 and set(param_space) == {"search"}
    assert type(scheduler).__name__ == "AsyncHyperBandScheduler" and scheduler._time_attr == "surrogate_epochs"
    suggested = trial_config({"search": {"regularizer.epsilon": 0.2}, "__trial_index__": 1}, grid)
    assert suggested.seed == 1 and suggested.regularizer.epsilon == 0.2


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"search": {"regularizer.epsilon": {"gaussian": [0, 1]}}}, "unknown distribution 'gaussian'"),
        ({"search": {"regularizer.epsilon": {"uniform": [1.0]}}}, "uniform takes 2 finite numbers"),
        ({"search": {"regularizer.epsilon": {"loguniform": [0.0, 1.0]}}}, "needs bounds > 0"),
        ({"search": {"regularizer.epsilon": {"uniform": [0.5, 0.1]}}}, "lower < upper"),
        ({"search": {"regularizer.epsilon": {"uniform": [0.01, 0.5]}}}, "unknown option"),  # regularizer none
        ({"search_alg": {"name": "optuna"}, "objective": "val_loss"}, "needs distributions under 'search'"),
        ({"search_alg": {"name": "random"}}, "needs an explicit objective"),
        ({"scheduler": {"name": "asha"}, "objective": "oracle_score"}, "use an offline objective"),
        ({"objective": "accuracy"}, "unknown objective"),
        ({"grid": {"seed": [0]}, "search": {"seed": {"randint": [0, 9]}}}, "grid axis 'seed' and search key 'seed' both set"),
        ({"search_alg": {"name": "hyperopt"}}, "search_alg.name"),
    ],
)
def test_bad_search_sections_are_one_line_errors(fields, needle):
    with pytest.raises(UserError) as error:
        spec(**fields)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_objectives_say_whether_they_use_the_oracle():
    assert OBJECTIVES["oracle_score"].kind == "benchmark" and "oracle" in OBJECTIVES["oracle_score"].label
    assert OBJECTIVES["oracle_score"].label.startswith("benchmark: oracle_score (max)")
    for name in ("val_rank_corr", "val_loss", "sharpness"):
        assert OBJECTIVES[name].kind == "offline" and OBJECTIVES[name].per_epoch
        assert OBJECTIVES[name].label.startswith(f"offline: {name}")
    assert OBJECTIVES["val_loss"].mode == "min" and OBJECTIVES["val_rank_corr"].mode == "max"


def test_overrides_reach_dotted_grid_axes_and_nested_trial_fields():
    raw = {"name": "x", "trial": {"fidelity": "full"}, "grid": {"seed": [0, 1, 2]}}
    changed = apply_overrides(raw, {"trial.fidelity": "quick", "grid.seed": [0], "grid.regularizer.epsilon": [0.1],
                                    "trial.baseline_options.epochs": 1, "name": "y"})
    assert changed == {"name": "y", "trial": {"fidelity": "quick", "baseline_options": {"epochs": 1}},
                       "grid": {"seed": [0], "regularizer.epsilon": [0.1]}}
    assert raw["grid"]["seed"] == [0, 1, 2]


def test_cli_resume_without_a_sweep_and_with_a_corrupt_or_foreign_record(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text("name: quickish\ntrial: {fidelity: quick}\n")
    assert main(["sweep", str(space), "--resume", "--output-dir", "out"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    (tmp_path / "out" / "quickish").mkdir(parents=True)
    (tmp_path / "out" / "quickish" / "sweep.json").write_text("{")
    assert main(["sweep", str(space), "--resume", "--output-dir", "out"]) == 2
    assert "not a sweep record" in capsys.readouterr().err
    (tmp_path / "out" / "quickish" / "sweep.json").write_text("{}")
    assert main(["sweep", str(space), "--resume", "--output-dir", "out"]) == 2
    assert "not a sweep record" in capsys.readouterr().err
    record = {"spec": {"name": "quickish"}, "tracking_uri": "sqlite:///x.db", "parent_run_id": "0",
              "experiment": "quickish", "storage_path": "out", "experiment_path": "out/quickish"}
    (tmp_path / "out" / "quickish" / "sweep.json").write_text(json.dumps(record))
    assert main(["sweep", str(space), "--resume", "--output-dir", "out"]) == 2
    assert "differs from the one the sweep started with" in capsys.readouterr().err
    assert main(["sweep", str(space), "--override", "grid.seed=[0, 1", "--output-dir", "out"]) == 2
    assert "not a YAML value" in capsys.readouterr().err


def test_a_space_run_again_gets_a_fresh_folder_and_resume_takes_the_newest(tmp_path):
    from ignite_mbo.platform.plan import sweep_folder

    out = tmp_path / "out"
    assert sweep_folder(out, "quick", resume=False) == out / "quick"
    (out / "quick").mkdir(parents=True)
    (out / "quick" / "sweep.json").write_text("{}")
    assert sweep_folder(out, "quick", resume=False) == out / "quick-2"
    (out / "quick-2").mkdir()
    assert sweep_folder(out, "quick", resume=False) == out / "quick-2", "an empty folder is reused"
    (out / "quick-2" / "sweep.json").write_text("{}")
    assert sweep_folder(out, "quick", resume=True) == out / "quick-2"
    assert sweep_folder(out, "quick", resume=False) == out / "quick-3"


# ---- the sensitivity report ----------------------------------------------------------------------

def test_report_draws_the_gain_against_each_sensitivity_parameter(tmp_path):
    from ignite_mbo.platform.report.sweep_report import report_sweep

    rows = []
    for seed in (0, 1):
        rows.append({"regularizer": "none", "config.regularizer.name": "none", "score": 0.80})
        for epsilon in (0.01, 0.1, 1.0):
            for lambda_lr in (0.0001, 0.001):
                rows.append({"regularizer": "ignite", "config.regularizer.name": "ignite",
                             "config.regularizer.epsilon": epsilon, "config.regularizer.lambda_lr": lambda_lr,
                             "score": 0.80 + 0.01 * np.log10(epsilon * 100) + lambda_lr})
        for row in rows[-7:]:
            row["seed"] = seed
    table = pd.DataFrame(rows)
    table = table.assign(task="TFBind10-Exact-v0", baseline="grad-ascent", status="TERMINATED",
                         score_100th=table["score"], score_80th=table["score"] - 0.1, score_50th=table["score"] - 0.2,
                         regularizer_affects_search=True, objective_kind=None).drop(columns="score")
    from ignite_mbo.platform.record import SweepRecord

    record = SweepRecord(spec={"report": {"sensitivity": ["epsilon", "lambda_lr", "rho"]}}, tracking_uri="",
                         experiment="s", parent_run_id="", storage_path="", experiment_path="")
    markdown, paths = report_sweep(tmp_path, table, record, mlflow=False)
    assert tmp_path / "sensitivity_epsilon.png" in paths
    for name in ("sensitivity_epsilon.png", "sensitivity_lambda_lr.png", "gain_table.md"):
        assert (tmp_path / name).read_bytes()[:4] in (b"\x89PNG", b"## I")
    assert "sensitivity_epsilon.png" in markdown and "no sensitivity plot for rho" in markdown


# ---- an Optuna + ASHA search, end to end ---------------------------------------------------------

SEARCH = """
name: search
trial:
  task: TFBind8-Exact-v0
  baseline: grad-ascent
  fidelity: quick
  regularizer: ignite
  baseline_options: {hidden_size: 32, epochs: 3, batch_size: 2048, solver_steps: 20}
grid:
  seed: [0]
search:
  regularizer.epsilon: {loguniform: [0.01, 1.0]}
  regularizer.lambda_lr: {choice: [0.0001, 0.001, 0.01]}
num_samples: 4
search_alg: {name: optuna, seed: 0}
scheduler: {name: asha, grace_period: 1, max_t: 3, reduction_factor: 2}
objective: val_rank_corr
max_concurrent_trials: 2
"""


@pytest.mark.slow
def test_optuna_asha_search_with_an_offline_objective(tmp_path, design_bench_dir):
    (tmp_path / "search.yaml").write_text(SEARCH)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    env = {**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir), "RAY_TMPDIR": ray_tmp}
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "ignite_mbo.cli", "sweep", "search.yaml", "--tracking-uri", uri, "--output-dir",
             "out", "--num-cpus", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
            start_new_session=True)
    finally:
        kill_marked("RAY_TMPDIR", ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    label = OBJECTIVES["val_rank_corr"].label
    assert f"Objective: {label}" in completed.stdout and "Best trial (val_rank_corr, max; offline)" in completed.stdout

    table = pd.read_parquet(tmp_path / "out" / "search" / "results.parquet")
    assert len(table) == 4 and set(table["status"]) <= {"TERMINATED", "STOPPED"}
    assert (table["status"] == "TERMINATED").any()
    assert set(table["objective_kind"]) == {label}
    epsilons = pd.to_numeric(table["config.regularizer.epsilon"])
    assert epsilons.between(0.01, 1.0).all() and epsilons.nunique() == 4, "Optuna sampled each trial's ε"
    finished = table[table["status"] == "TERMINATED"]
    assert finished["objective"].between(-1, 1).all()

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("search").experiment_id
    parent = client.search_runs([experiment], "tags.`ignite_mbo.kind` = 'sweep'")[0]
    assert parent.data.tags["ignite_mbo.objective_kind"] == label and parent.data.tags["ignite_mbo.search_alg"] == "optuna"
    assert "best_objective" in parent.data.metrics
    runs = {run.info.run_id: run for run in client.search_runs([experiment], "tags.`ignite_mbo.kind` = 'trial'")}
    assert set(runs) == set(table["mlflow_run_id"])
    for row in table.itertuples():
        run = runs[row.mlflow_run_id]
        assert run.data.tags["ignite_mbo.objective_kind"] == label
        if row.status == "TERMINATED":
            assert run.info.status == "FINISHED" and run.data.metrics["objective"] == pytest.approx(row.objective)
        else:  # stopped early by ASHA
            assert run.info.status == "KILLED" and run.data.tags["ignite_mbo.stopped"] == "by the scheduler"


def test_design_bench_check_space_runs_the_reproduction_comparison():
    from ignite_mbo.platform.report.published import TASK, TF_BIND_8_100TH

    check = load_spec(SPACES / "design_bench_check.yaml")
    configs = check.trials()
    assert len(configs) == 9 * 8
    assert {c.baseline for c in configs} == {p.baseline for p in TF_BIND_8_100TH}, "every published baseline"
    assert {c.task for c in configs} == {TASK} and {c.fidelity for c in configs} == {"full"}
    assert {c.regularizer.name for c in configs} == {"none"} and {c.seed for c in configs} == set(range(8))


def test_a_dotted_key_in_trial_means_what_it_means_in_grid() -> None:
    """Pass 20: `trial: {baseline_options.epochs: 2}` was refused as a misspelt option, though grid and search take
    dotted keys and the docs call keys dotted paths."""
    from ignite_mbo.platform.spaces import parse_spec

    dotted = parse_spec({"name": "x", "trial": {"fidelity": "quick", "baseline_options.epochs": 2,
                                                 "regularizer": "ignite", "regularizer.epsilon": 0.2}}, "x.yaml")
    nested = parse_spec({"name": "x", "trial": {"fidelity": "quick", "baseline_options": {"epochs": 2},
                                                 "regularizer": {"name": "ignite", "epsilon": 0.2}}}, "x.yaml")
    assert [t.model_dump() for t in dotted.trials()] == [t.model_dump() for t in nested.trials()]
    assert dotted.trials()[0].baseline_options["epochs"] == 2 and dotted.trials()[0].regularizer.epsilon == 0.2
