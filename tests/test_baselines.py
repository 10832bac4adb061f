"""Every baseline, shrunk to seconds (``baseline_checks.SMOKE``): valid designs on every task and
regularizer, determinism, and the regularizer reaching every member of the regularized model.

Method-specific properties live in test_baselines_<group>.py and test_grad_ascent.py; the paper's
protocol in test_protocol.py.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from ignite_mbo.baselines import Baseline, grad_ascent, load, names
from ignite_mbo.tasks import Task

from baseline_checks import NUM_MEMBERS, SMOKE, assert_valid

REGULARIZERS = ("none", "ignite", "ignite2")


def smoke_run(quick_run, baseline: str, regularizer: str = "none", **kwargs):
    return quick_run(baseline, regularizer, options=SMOKE[baseline], **kwargs)


def test_every_baseline_is_covered() -> None:
    assert set(NUM_MEMBERS) == set(SMOKE) == set(names())


def test_every_setting_has_a_description() -> None:
    for name in names():
        fields = load(name).settings_type.model_fields
        assert not [setting for setting, field in fields.items() if not field.description], name


def test_a_new_module_is_a_new_baseline(tmp_path, monkeypatch) -> None:
    """A module that declares ``BASELINE`` is found with no list to edit; its quick values are checked on import."""
    import ignite_mbo.baselines as package

    (tmp_path / "toy_search.py").write_text(
        "from ignite_mbo.baselines import grad_ascent\n"
        "from ignite_mbo.baselines.base import Baseline\n"
        "BASELINE = Baseline('toy-search', grad_ascent.Settings, grad_ascent.propose, order=100, quick={'epochs': 1})\n")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    package.registry.cache_clear()
    try:
        assert names()[-1] == "toy-search" and names()[:-1] == list(NUM_MEMBERS)
        assert load("toy-search").settings("quick").epochs == 1
    finally:
        package.registry.cache_clear()


def test_a_trial_imports_only_its_own_baseline() -> None:
    """A worker that validates a CMA-ES trial does not import BoTorch (BO-qEI) or any other baseline."""
    code = ("import sys; from ignite_mbo.config import TrialConfig; TrialConfig.parse({'baseline': 'cma-es'})"
            ".baseline_settings(); print(sorted(m for m in sys.modules if m.startswith(('ignite_mbo.baselines.', "
            "'botorch'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["['ignite_mbo.baselines.base',", "'ignite_mbo.baselines.cma_es',",
                                     "'ignite_mbo.baselines.ensemble']"]


def test_a_declaration_with_a_typo_fails_on_import() -> None:
    with pytest.raises(ValidationError, match="epoch"):
        Baseline("typo", grad_ascent.Settings, grad_ascent.propose, order=100, quick={"epoch": 1})
    with pytest.raises(TypeError, match="per-task default 'epochs'"):
        Baseline("typo", grad_ascent.Settings, grad_ascent.propose, order=100, per_task_defaults={"epochs": len})


@pytest.mark.parametrize("regularizer", REGULARIZERS)
@pytest.mark.parametrize("baseline", names())
def test_tf_bind_8_every_regularizer(quick_run, tf_bind_8: Task, baseline: str, regularizer: str) -> None:
    result, _ = smoke_run(quick_run, baseline, regularizer)
    assert_valid(result, tf_bind_8, baseline)


@pytest.mark.parametrize("task", ["tf_bind_10", "ackley"])
@pytest.mark.parametrize("baseline", names())
def test_other_tasks(quick_run, request: pytest.FixtureRequest, baseline: str, task: str) -> None:
    """TF-Bind-10 (discrete, 4^10 designs) and Synthetic-Ackley60 (continuous)."""
    task_: Task = request.getfixturevalue(task)
    assert_valid(smoke_run(quick_run, baseline, "ignite", task=task_)[0], task_, baseline)


@pytest.mark.parametrize("baseline", names())
def test_same_seed_same_run(quick_run, baseline: str) -> None:
    first, first_logged = smoke_run(quick_run, baseline, "ignite")
    again, again_logged = smoke_run(quick_run, baseline, "ignite", fresh=True)
    np.testing.assert_array_equal(first.proposal.designs, again.proposal.designs)
    assert first.proposal.surrogates[0].regularizer.lambdas() == again.proposal.surrogates[0].regularizer.lambdas()
    assert first_logged == again_logged


@pytest.mark.parametrize("baseline", ["reinforce", "cbas", "cma-es", "mins", "coms"])
def test_other_seed_other_designs(quick_run, baseline: str) -> None:
    """(grad-ascent's 20 smoke steps leave the designs where they start; test_grad_ascent.py checks its seeds.)"""
    seed_0, seed_1 = (smoke_run(quick_run, baseline, seed=seed)[0] for seed in (0, 1))
    assert not np.array_equal(seed_0.proposal.designs, seed_1.proposal.designs)


@pytest.mark.parametrize("baseline", names())
def test_regularizer_reaches_every_member(quick_run, baseline: str) -> None:
    plain, ignite, ignite2 = (smoke_run(quick_run, baseline, regularizer)[0] for regularizer in REGULARIZERS)
    members = NUM_MEMBERS[baseline]
    assert plain.summary["final_lambda"] == 0.0
    assert plain.proposal.surrogates[0].regularizer.state_dict() == {}
    assert "constraint_sharpness" not in plain.proposal.surrogates[0].history[-1]

    (surrogate,) = ignite.proposal.surrogates
    lambdas = surrogate.regularizer.state_dict()["lambda"]
    assert len(lambdas) == members
    assert len(set(lambdas)) == members  # each member updates its own λ on its own bootstrap
    assert all(value != pytest.approx(1e-3) for value in lambdas)  # dual ascent moved every λ
    assert ignite.summary["final_lambda"] == pytest.approx(np.mean(lambdas))
    assert "constraint_sharpness" in surrogate.history[-1]

    # ignite2 keeps every member's λ fixed at the published 0.01
    assert ignite2.proposal.surrogates[0].regularizer.state_dict() == {"lambda": [pytest.approx(0.01)] * members}
    assert ignite2.summary["final_lambda"] == pytest.approx(0.01)
