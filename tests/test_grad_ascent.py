"""Gradient ascent end to end at quick fidelity, the evaluation, determinism and option errors."""

from __future__ import annotations

import numpy as np
import pytest

from ignite_mbo.baselines import grad_ascent
from ignite_mbo.config import TrialConfig
from ignite_mbo.errors import UserError
from ignite_mbo.evaluation import nearest_rank

from baseline_checks import series

SMALL = {"hidden_size": 64, "epochs": 2, "batch_size": 1024, "solver_lr": 0.1}  # small and fast, yet the designs move


def test_nearest_rank_percentiles():
    values = np.arange(1, 129, dtype=float)  # 1..128
    assert nearest_rank(values, 100) == 128
    assert nearest_rank(values, 50) == 64  # ceil(0.5 * 128) = 64th smallest
    assert nearest_rank(values, 80) == 103  # ceil(0.8 * 128) = 103rd smallest
    assert nearest_rank(np.array([3.0]), 50) == 3.0


def test_grad_ascent_quick_on_tf_bind_8(quick_run):
    """(Every regularizer's wiring is test_baselines.py's, at smoke size.)"""
    result, logged = quick_run("grad-ascent")
    summary = result.summary
    assert result.proposal.designs.shape == (128, 8) and result.proposal.designs.dtype == np.int32
    assert summary["num_candidates"] == 128
    assert 0 <= summary["score_50th"] <= summary["score_80th"] <= summary["score_100th"] <= 1
    # gradient ascent from the best training designs (max normalised 0.439) finds better ones
    assert summary["score_100th"] > 0.5
    assert summary["sharpness_train"] > 0 and summary["sharpness_candidates"] > 0
    assert summary["protocol_deviations"] == "fidelity=quick"
    history = result.proposal.surrogates[0].history
    assert len(history) == grad_ascent.QUICK["epochs"] and history[-1]["val_rank_corr"] > 0.3
    predicted = series(logged, "search/predicted_mean")
    assert predicted[-1] > predicted[0]  # the ascent climbs the surrogate
    assert result.proposal.metrics["final_disagreement"] == 0.0  # one model: nothing to disagree with
    assert summary["final_lambda"] == 0.0


def test_same_seed_same_scores_and_other_seed_differs(quick_run):
    first = quick_run("grad-ascent", "ignite", seed=3, options=SMALL)[0].scores
    again = quick_run("grad-ascent", "ignite", seed=3, options=SMALL, fresh=True)[0].scores
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, quick_run("grad-ascent", "ignite", seed=4, options=SMALL)[0].scores)


def test_bad_baseline_options_are_one_line_errors():
    with pytest.raises(UserError, match="epochs") as error:
        TrialConfig.parse({"baseline_options": {"epochs": "many"}})
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="unknown option"):
        TrialConfig.parse({"baseline_options": {"epoch": 3}})
    with pytest.raises(UserError, match="unknown baseline"):
        TrialConfig.parse({"baseline": "gradient-descent"})
