"""Assertions shared by the baseline tests: ``from baseline_checks import assert_valid, series``."""

from __future__ import annotations

import math

import numpy as np

from ignite_mbo.tasks import Task
from ignite_mbo.trial import TrialResult

Logged = list[tuple[int, dict[str, float]]]
"""What a trial logged: ``(step, metrics)`` in order."""

SUMMARY_KEYS = ("score_100th", "score_80th", "score_50th", "score_mean", "sharpness_train", "sharpness_candidates")

NUM_SURROGATES = {
    "grad-ascent": 1, "ens-mean": 5, "ens-min": 5, "reinforce": 5, "cbas": 5, "bo-qei": 5, "cma-es": 5,
    "mins": 1, "coms": 1,
}
"""Regularized models each baseline trains (one regularizer each)."""

EXTRA_SUMMARY_KEYS = {"cbas": ("final_predicted_mean",), "bo-qei": ("final_predicted_mean",)}
"""Method metrics that must be present (and finite) in the summary."""


def assert_valid(result: TrialResult, task: Task, baseline: str | None = None) -> None:
    """128 in-range designs of the task's shape, finite summary numbers; with ``baseline``, its surrogates too."""
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
        assert len(result.proposal.surrogates) == NUM_SURROGATES[baseline]
        for key in EXTRA_SUMMARY_KEYS.get(baseline, ()):
            assert math.isfinite(result.summary[key]), key
        # only MINs searches without the regularized model (its generator ignores the forward model)
        assert result.summary["regularizer_affects_search"] is (baseline != "mins")


def series(logged: Logged, key: str) -> list[float]:
    """The values of ``key`` in the order they were logged."""
    return [metrics[key] for _, metrics in logged if key in metrics]
