"""Every baseline at quick fidelity: valid designs on every task and regularizer, determinism, regularizer wiring.

Method-specific properties live in test_baselines_<group>.py; grad-ascent's own checks in test_grad_ascent.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from baseline_checks import NUM_SURROGATES, assert_valid

from ignite_mbo.baselines import BASELINES
from ignite_mbo.tasks import Task

REGULARIZERS = ("none", "ignite", "ignite2")
MATRIX = tuple(name for name in BASELINES if name != "grad-ascent")
"""grad-ascent's TF-Bind-8, same-seed and Ackley runs are test_grad_ascent.py's (the slowest quick runs)."""
OTHER_TASKS = [
    *((name, task, "ignite") for task in ("tf_bind_10", "ackley") for name in MATRIX),
    ("grad-ascent", "tf_bind_10", "ignite"),
    # cbas's and bo-qei's first tests ran these unregularized; kept (bo-qei's Ackley run feeds its own test too)
    *((name, task, "none") for task in ("tf_bind_10", "ackley") for name in ("cbas", "bo-qei")),
]


def test_every_baseline_is_covered() -> None:
    assert set(NUM_SURROGATES) == set(BASELINES) == {*MATRIX, "grad-ascent"}


@pytest.mark.parametrize("regularizer", REGULARIZERS)
@pytest.mark.parametrize("baseline", MATRIX)
def test_tf_bind_8_every_regularizer(quick_run, tf_bind_8: Task, baseline: str, regularizer: str) -> None:
    result, _ = quick_run(baseline, regularizer)
    assert_valid(result, tf_bind_8, baseline)


@pytest.mark.parametrize(("baseline", "task", "regularizer"), OTHER_TASKS)
def test_other_tasks(quick_run, request: pytest.FixtureRequest, baseline: str, task: str, regularizer: str) -> None:
    """TF-Bind-10 (discrete, 4^10 designs) and Synthetic-Ackley60 (continuous)."""
    task_: Task = request.getfixturevalue(task)
    assert_valid(quick_run(baseline, regularizer, task=task_)[0], task_, baseline)


@pytest.mark.parametrize("baseline", MATRIX)
def test_same_seed_same_run(quick_run, baseline: str) -> None:
    first, first_logged = quick_run(baseline, "ignite")
    again, again_logged = quick_run(baseline, "ignite", fresh=True)
    np.testing.assert_array_equal(first.proposal.designs, again.proposal.designs)
    assert first.summary["final_lambda"] == again.summary["final_lambda"]
    assert first_logged == again_logged


@pytest.mark.parametrize("baseline", ["cma-es", "mins"])
def test_other_seed_other_designs(quick_run, baseline: str) -> None:
    seed_0, seed_1 = quick_run(baseline, "none")[0], quick_run(baseline, "none", seed=1)[0]
    assert not np.array_equal(seed_0.proposal.designs, seed_1.proposal.designs)


@pytest.mark.parametrize("baseline", MATRIX)
def test_regularizer_reaches_every_surrogate(quick_run, baseline: str) -> None:
    plain, ignite, ignite2 = (quick_run(baseline, regularizer)[0] for regularizer in REGULARIZERS)
    assert plain.summary["final_lambda"] == 0.0
    assert all(s.regularizer.state_dict() == {} for s in plain.proposal.surrogates)

    assert ignite.summary["final_lambda"] > 0.0
    assert ignite.summary["final_lambda"] != pytest.approx(1e-3)  # λ moved by dual ascent
    regularizers = [s.regularizer for s in ignite.proposal.surrogates]
    assert len({id(r) for r in regularizers}) == len(regularizers) == NUM_SURROGATES[baseline]  # one per model
    lambdas = [r.state_dict()["lambda"] for r in regularizers]
    assert len(set(lambdas)) == len(lambdas)  # each updated on its own model (and bootstrap)
    assert all("constraint_sharpness" in s.history[-1] for s in ignite.proposal.surrogates)

    # ignite2 keeps λ fixed at its default
    assert [s.regularizer.state_dict()["lambda"] for s in ignite2.proposal.surrogates] == [0.01] * len(lambdas)
    assert ignite2.summary["final_lambda"] == pytest.approx(0.01)
