"""Assertions and settings shared by the baseline tests: ``from baseline_checks import SMOKE, assert_valid, series``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ignite_mbo.tasks import Task
from ignite_mbo.trial import TrialResult

Logged = list[tuple[int, dict[str, float]]]
"""What a trial logged: ``(step, metrics)`` in order."""

SUMMARY_KEYS = ("score_100th", "score_80th", "score_50th", "score_mean", "sharpness_train", "sharpness_candidates")

NUM_MEMBERS = {
    "grad-ascent": 1, "ens-mean": 5, "ens-min": 5, "reinforce": 5, "cbas": 5, "bo-qei": 5, "cma-es": 5,
    "mins": 1, "coms": 1, "roma": 1, "ict": 3,
}
"""Members of the one regularized (stacked) model each baseline trains; each member has its own λ."""

EXTRA_SUMMARY_KEYS = {"cbas": ("final_predicted_mean",), "bo-qei": ("final_predicted_mean",)}
"""Method metrics that must be present (and finite) in the summary."""

_GA_SMOKE = {"hidden_size": 32, "epochs": 1, "batch_size": 1024, "solver_steps": 20}
_ENSEMBLE_SMOKE = {"hidden_size": 16, "embedding_size": 8, "epochs": 1, "batch_size": 1000}
SMOKE: dict[str, dict[str, Any]] = {
    "grad-ascent": _GA_SMOKE,
    "ens-mean": _GA_SMOKE,
    "ens-min": _GA_SMOKE,
    "reinforce": {**_ENSEMBLE_SMOKE, "iterations": 5},
    "cbas": {**_ENSEMBLE_SMOKE, "offline_epochs": 2, "online_epochs": 1, "iterations": 2},
    "bo-qei": {**_ENSEMBLE_SMOKE, "bo_iterations": 2, "bo_maxiter": 10},
    "cma-es": {**_ENSEMBLE_SMOKE, "cma_max_iterations": 3},
    "mins": {"hidden_size": 32, "forward_epochs": 1, "forward_batch_size": 1024, "gan_hidden_size": 32,
             "gan_epochs": 2, "gan_batch_size": 1024},
    "coms": {"hidden_size": 32, "batch_size": 1024, "particle_train_gradient_steps": 2,
             "particle_evaluate_gradient_steps": 10},  # epochs and validation_size stay the paper's
    "roma": {"hidden_size": 16, "epochs": 1, "batch_size": 1024, "updates": 5},
    "ict": {"hidden_size": 32, "epochs": 1, "batch_size": 1024, "search_steps": 5, "neighbours": 16},
}
"""Baseline options on top of ``QUICK`` that make a run take seconds: for checks of wiring, validity
and determinism, not of how well a method searches (those use ``QUICK`` as it is)."""


def assert_valid(result: TrialResult, task: Task, baseline: str | None = None) -> None:
    """128 in-range designs of the task's shape, finite summary numbers; with ``baseline``, its surrogate too."""
    designs = result.proposal.designs
    assert designs.shape == (128, *task.design_shape)
    if task.is_discrete:
        assert np.issubdtype(designs.dtype, np.integer)
        assert designs.min() >= 0 and designs.max() < task.num_classes
    else:
        assert designs.dtype == np.float32 and np.isfinite(designs).all()
    assert result.summary["num_candidates"] == 128
    for key in SUMMARY_KEYS:
        assert math.isfinite(result.summary[key]), key
    assert all(math.isfinite(value) for value in result.proposal.metrics.values()), result.proposal.metrics
    assert all(surrogate.history for surrogate in result.proposal.surrogates)
    if baseline is not None:
        (surrogate,) = result.proposal.surrogates  # one (possibly stacked) model per baseline
        assert getattr(surrogate.model, "num_members", 1) == NUM_MEMBERS[baseline]
        for key in EXTRA_SUMMARY_KEYS.get(baseline, ()):
            assert math.isfinite(result.summary[key]), key
        # only MINs searches without the regularized model (its generator ignores the forward model)
        assert result.summary["regularizer_affects_search"] is (baseline != "mins")


def series(logged: Logged, key: str) -> list[float]:
    """The values of ``key`` in the order they were logged."""
    return [metrics[key] for _, metrics in logged if key in metrics]
