"""The command line: --help everywhere, and bad input as one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from ignite_mbo.cli import main
from ignite_mbo.regularizers import IgniteConfig


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory; tests assert it stays empty after bad input."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fails_cleanly(capsys, workdir: Path, argv: list[str], needle: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert needle in err, err
    assert list(workdir.iterdir()) == [], "bad input must write nothing"
    return err


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["report"], ["data"], ["baselines"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: ignite-mbo" in out
    if command in (["run"], ["sweep"], ["data"]):
        assert "(default:" in out, "help shows defaults"
    flat = " ".join(out.split())
    assert "(default: None)" not in flat and "(default: [])" not in flat, "unset options say what happens instead"
    assert not re.search(r"default[^()]*\) \(default:", flat), "a help that names its default gets no second one"


def help_of(flat_help: str, flag: str) -> str:
    """The help text of ``flag`` in a whitespace-flattened --help (up to the next flag)."""
    return flat_help.split(f" {flag} ", 1)[1].split(" --", 1)[0]


def test_help_states_the_regularizer_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert IgniteConfig().project_lambda is False and "(default: off)" in help_of(flat, "--no-project-lambda")
    assert IgniteConfig().hvp == "finite_difference" and "(default: finite_difference)" in flat
    assert "(default: ignite: 0.001; ignite2: 0.01)" in help_of(flat, "INITIAL_LAMBDA"), "defaults that differ, each"


def test_flags_come_from_the_pydantic_fields(capsys, monkeypatch):
    """A regularizer's new hyperparameter and a trial field's description reach --help with no CLI edit."""
    from pydantic import BaseModel, Field

    from ignite_mbo import regularizers
    from ignite_mbo.config import TrialConfig

    class ToyConfig(BaseModel):
        name: Literal["toy"] = "toy"
        toy_strength: float = Field(0.25, description="how strongly the toy pulls")
        lambda_: bool = Field(False, description="a keyword's field")
        rho: int = Field(3, description="the toy's own ρ")

    monkeypatch.setitem(regularizers.CONFIGS, "toy", ToyConfig)
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "how strongly the toy pulls (default: 0.25)" in help_of(flat, "TOY_STRENGTH")
    assert "a keyword's field (default: off)" in help_of(flat, "--no-lambda")
    rho = help_of(flat, "RHO")
    assert "; toy: the toy's own ρ (default: " in rho and "; toy: 3)" in rho, "a shared name: each one's"
    assert "ignite, ignite2: ρ, the sharpness scale" in rho, "regularizers that agree share one entry"
    assert "ignite2: 0.2" in rho
    assert f"{TrialConfig.model_fields['seed'].description} (default: 0)" in help_of(flat, "SEED")
    assert "one of none, ignite, ignite2" in help_of(flat, "REGULARIZER")


def test_unknown_setting_names_the_valid_ones(capsys, workdir):
    from ignite_mbo.baselines import grad_ascent

    err = fails_cleanly(capsys, workdir, ["run", "--set", "epoch=3"],
                        "unknown option 'epoch' for baseline 'grad-ascent'; did you mean 'epochs'?")
    assert all(name in err for name in grad_ascent.Settings.model_fields), err
    assert "ignite-mbo baselines grad-ascent" in err


def test_baselines_lists_every_setting_default_quick_value_and_per_task_default(capsys):
    from ignite_mbo.baselines import cbas, load, names

    assert main(["baselines"]) == 0
    everything = capsys.readouterr().out
    for name in names():
        assert f"{name}: {len(load(name).settings_type.model_fields)} settings" in everything
    assert main(["baselines", "cbas"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line.split() for line in lines if line.split()[:1] == ["online_epochs"])
    assert row[:3] == ["online_epochs", str(cbas.Settings().online_epochs), str(cbas.QUICK["online_epochs"])]
    assert " ".join(row[3:]) == cbas.Settings.model_fields["online_epochs"].description
    assert next(line.split()[:2] for line in lines if "offline_epochs" in line) == ["offline_epochs", "per"]
    assert "per task, offline_epochs: TFBind8-Exact-v0 200, TFBind10-Exact-v0 100" in "\n".join(lines)


def test_unknown_baseline_to_list(capsys, workdir):
    fails_cleanly(capsys, workdir, ["baselines", "gradient-descent"], "unknown baseline 'gradient-descent'; choose one of")


def test_run_checks_task_options_once(monkeypatch, capsys):
    """Parsing the trial checks the task options; building the task does not check them again."""
    import ignite_mbo.trial
    from ignite_mbo import tasks

    checks = []
    validate = tasks.validate_options
    monkeypatch.setattr(tasks, "validate_options", lambda *args: checks.append(args) or validate(*args))

    def stop(config, task, **kwargs):
        assert task.info["data_seed"] == 3
        raise KeyboardInterrupt

    monkeypatch.setattr(ignite_mbo.trial, "run_trial", stop)
    code = main(["run", "--task", "Synthetic-Ackley60-v0", "--task-option", "data_seed=3", "--quiet"])
    assert code == 130 and checks == [("Synthetic-Ackley60-v0", {"data_seed": 3})]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("ignite-mbo 0.")


def test_run_quiet_has_no_progress_bar(design_bench_dir):
    completed = subprocess.run(
        ["ignite-mbo", "run", "--fidelity", "quick", "--set", "hidden_size=16", "--set", "epochs=1", "--quiet"],
        capture_output=True, text=True, env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir),
                                            "OMP_NUM_THREADS": "1"}, check=True)
    assert completed.stderr == "" and json.loads(completed.stdout.splitlines()[-1])["num_candidates"] == 128


def test_run_with_tracking_leaves_no_run_running(tmp_path, design_bench_dir):
    """A trial that fails (here: its loss goes non-finite) closes its MLflow run FAILED with the reason."""
    from mlflow.tracking import MlflowClient

    completed = subprocess.run(
        ["ignite-mbo", "run", "--fidelity", "quick", "--set", "hidden_size=32", "--set", "epochs=1", "--quiet",
         "--set", "solver_steps=20", "--set", "learning_rate=1000", "--set", "batch_size=2048", "--seed", "2",
         "--tracking-uri", "sqlite:///mlflow.db"],
        cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir), "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1 and "non-finite" in completed.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("runs").experiment_id])
    assert run.info.status == "FAILED" and "NonFiniteLossError" in run.data.tags["ignite_mbo.error"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--task", "TFBind9-Exact-v0"], "unknown task"),
        (["run", "--baseline", "gradient-descent"], "unknown baseline"),
        (["run", "--regularizer", "magic"], "unknown regularizer 'magic'; choose one of none, ignite, ignite2"),
        (["run", "--regularizer", "ignite", "--rho", "-1"], "rho"),
        (["run", "--regularizer", "none", "--epsilon", "0.1"], "unknown option"),
        (["run", "--seed", "abc"], "invalid int value"),
        (["run", "--seed", "-1"], "seed"),
        (["run", "--set", "epochs=many"], "epochs"),
        (["run", "--set", "epochs"], "KEY=VALUE"),
        (["run", "--fidelity", "medium"], "invalid choice"),
        (["sweep", "does-not-exist.yaml"], "not found"),
        (["report", "no-such-sweep"], "no results at"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, needle, capsys, workdir):
    fails_cleanly(capsys, workdir, argv, needle)


def test_missing_and_corrupt_data(capsys, workdir, design_bench_dir, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    err = fails_cleanly(capsys, workdir, ["run", "--data-dir", str(empty)], "TF-Bind-8 data missing")
    assert "ignite-mbo data download" in err
    corrupt = tmp_path_factory.mktemp("corrupt")
    shutil.copytree(design_bench_dir / "tf_bind_8-SIX6_REF_R1", corrupt / "tf_bind_8-SIX6_REF_R1")
    target = corrupt / "tf_bind_8-SIX6_REF_R1" / "tf_bind_8-y-0.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    fails_cleanly(capsys, workdir, ["run", "--data-dir", str(corrupt)], "corrupt")
    fails_cleanly(capsys, workdir, ["data", "verify", "--task", "tf_bind_8", "--data-dir", str(corrupt)], "tf_bind_8")


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("name: x\ntrial: {task: [unclosed\n", "not valid YAML at line"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("name: x\ntrial: {baseline: nope}\n", "unknown baseline"),
        ("name: x\ngrid: {seed: [0, -3]}\n", "seed"),
        ("name: x\ntrial: {}\nresorces: {cpu: 1}\n", "unknown option"),
        ("name: x\nresources: {gpu: -1}\n", "gpu"),
        ("name: x\ngrid: {regularizer: [none, {name: ignite, rho: zero}]}\n", "rho"),
    ],
)
def test_malformed_search_space(yaml_text, needle, capsys, workdir, tmp_path_factory):
    space = tmp_path_factory.mktemp("spaces") / "space.yaml"
    space.write_text(yaml_text)
    fails_cleanly(capsys, workdir, ["sweep", str(space)], needle)


def test_run_prints_summary_json_on_last_line(design_bench_dir):
    """The installed console script end to end, as a user runs it."""
    completed = subprocess.run(
        ["ignite-mbo", "run", "--regularizer", "ignite", "--fidelity", "quick", "--seed", "1",
         "--set", "hidden_size=64", "--set", "epochs=1", "--epsilon", "0.05"],
        capture_output=True, text=True, env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir),
                                            "OMP_NUM_THREADS": "1"}, check=True,
    )
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    bars = completed.stderr.replace("\r", "\n")
    assert "epochs" in bars and "1/1" in bars and "%|" in bars, "a progress bar with counts on stderr"
    for key in ("score_100th", "score_80th", "score_50th", "num_candidates", "sharpness_candidates",
                "sharpness_train", "final_lambda"):
        assert key in summary
    assert summary["num_candidates"] == 128
    assert summary["config"]["regularizer"]["epsilon"] == 0.05
    assert 0 < summary["cpu_time_s"] and 0 < summary["wall_time_s"]  # what the trial cost, and how long it took
