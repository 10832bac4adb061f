"""Pass 21 (an independent adversarial pass, 45 cases): one setting given twice in a space, spelled two ways.

Since pass 20, ``baseline_options.epochs: 2`` and ``baseline_options: {epochs: 3}`` mean one setting wherever they
appear; a space that gave both ran with one of them and dropped the other without a word. Each setting is now given
in one place (trial, one grid or variant axis, or search), and a trial is built setting by setting, so a grid that
names the regularizer keeps the options ``trial`` gives it.
"""

from __future__ import annotations

import os

import pytest

from ignite_mbo.cli import main
from ignite_mbo.platform.spaces import parse_spec

HEAD = "name: twice\n"
TRIAL = "trial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n"

TWICE = [
    (HEAD + "trial:\n  task: TFBind8-Exact-v0\n  baseline_options.epochs: 2\n  baseline_options: {epochs: 3}\n",
     "trial key 'baseline_options.epochs' and trial key 'baseline_options' both set 'baseline_options.epochs'"),
    (HEAD + TRIAL + "grid:\n  seed: [0]\n  baseline_options: [{epochs: 3}]\nsearch:\n"
     "  baseline_options.epochs: {choice: [1, 2]}\n",
     "grid axis 'baseline_options' and search key 'baseline_options.epochs' both set 'baseline_options.epochs'"),
    (HEAD + TRIAL + "grid:\n  baseline_options: [{epochs: 3}]\n  baseline_options.epochs: [1, 2]\n",
     "grid axis 'baseline_options' and grid axis 'baseline_options.epochs' both set"),
    (HEAD + "trial: {task: TFBind8-Exact-v0, seed: 5}\ngrid: {seed: [0, 1]}\n",
     "trial key 'seed' and grid axis 'seed' both set 'seed'"),
    (HEAD + "trial: {regularizer: {name: ignite, epsilon: 0.2}}\ngrid: {regularizer.epsilon: [0.1, 0.3]}\n",
     "trial key 'regularizer' and grid axis 'regularizer.epsilon' both set 'regularizer.epsilon'"),
    (HEAD + "trial: {regularizer: {name: ignite, epsilon: 0.2}}\nsearch: {regularizer: {choice: [ignite, ignite2]}}\n",
     "trial key 'regularizer' and search key 'regularizer' both set 'regularizer.epsilon'"),
]


@pytest.mark.parametrize(("space", "needle"), TWICE, ids=[needle[:40] for _, needle in TWICE])
def test_a_setting_given_twice_is_refused_in_one_line_before_anything_is_written(space, needle, tmp_path, capsys,
                                                                                monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "twice.yaml").write_text(space)
    assert main(["sweep", "twice.yaml"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and needle in line and "give each setting in one place" in line, line
    assert os.listdir(tmp_path) == ["twice.yaml"]


def test_options_given_in_trial_reach_every_regularizer_the_grid_names() -> None:
    """``trial: {regularizer.epsilon: 0.2}`` with ``grid: {regularizer: [ignite, ignite2]}`` ran both at the
    default ε = 0.1: the grid's name replaced the whole regularizer mapping."""
    import yaml

    spec = parse_spec(yaml.safe_load(HEAD + TRIAL.replace("}", ", regularizer.epsilon: 0.2}") +
                                     "grid: {regularizer: [ignite, ignite2]}\n"))
    assert [(t.regularizer.name, t.regularizer.epsilon) for t in spec.trials()] == [("ignite", 0.2), ("ignite2", 0.2)]


def test_a_regularizer_and_its_options_from_two_axes_still_combine() -> None:
    import yaml

    spec = parse_spec(yaml.safe_load(HEAD + TRIAL.replace("}", ", baseline_options: {}}") + "grid:\n  regularizer: [ignite]\n"
                                     "  regularizer.epsilon: [0.05, 0.2]\n  baseline_options.epochs: [2]\n"))
    assert [(t.regularizer.epsilon, t.baseline_options["epochs"]) for t in spec.trials()] == [(0.05, 2), (0.2, 2)]
