"""CbAS and BO-qEI: method properties (the generic checks are in test_baselines.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from baseline_checks import Logged, series

from ignite_mbo.baselines import bo_qei, cbas
from ignite_mbo.baselines.base import Context
from ignite_mbo.baselines.ensemble import train_small_ensemble
from ignite_mbo.config import TrialConfig
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.regularizers import build
from ignite_mbo.tasks import Task
from ignite_mbo.trial import run_trial


def test_cbas_logs_each_iteration(quick_run) -> None:
    result, logged = quick_run("cbas")
    iterations = cbas.Settings(**cbas.QUICK).iterations
    for key in ("cbas/gamma", "cbas/predicted_mean", "cbas/ess"):
        values = series(logged, key)
        assert len(values) == iterations and all(math.isfinite(v) for v in values), key
    samples = cbas.Settings(**cbas.QUICK).online_batches * cbas.Settings(**cbas.QUICK).vae_batch_size
    assert all(1.0 <= ess <= samples for ess in series(logged, "cbas/ess"))
    assert result.summary["final_gamma"] == series(logged, "cbas/gamma")[-1]


def test_cbas_weights_favour_designs_the_ensemble_scores_above_gamma(ackley: Task) -> None:
    """At the first iteration q = p, so the weights are the ensemble's P(y > γ), rescaled to mean 1."""
    settings = cbas.Settings(**{**cbas.QUICK, "online_batches": 4, "epochs": 3})
    ctx = Context(new_regularizer=lambda: build("none"), seed=0, device=torch.device("cpu"))
    space = DesignSpace.for_task(ackley)
    surrogates = train_small_ensemble(ackley, space, ctx, settings)
    prior = cbas.DesignVAE(ackley.design_shape, None, settings)
    search = cbas.CbAS(ackley, space, surrogates, prior, settings, ctx, ctx.generator(1))
    x, weights, stats = search.weighted_samples()
    assert x.shape == (2000, 60) and weights.shape == (2000,)
    assert torch.all(weights >= 0) and weights.mean().item() == pytest.approx(1.0, rel=1e-4)
    means, stds = cbas.ensemble_predictive(surrogates, x)
    exceed = torch.special.ndtr((means - stats["gamma"]) / stds).mean(dim=1)
    torch.testing.assert_close(weights, exceed / exceed.mean(), rtol=1e-4, atol=1e-6)
    above = means.mean(dim=1) > stats["gamma"]
    assert weights[above].mean() > weights[~above].mean()


def test_cbas_search_climbs_the_ensemble(ackley: Task) -> None:
    """Refitting q on the weighted samples raises γ and the ensemble's mean prediction of q's samples."""
    config = TrialConfig.parse(dict(task=ackley.task_id, baseline="cbas", fidelity="quick", baseline_options=dict(
        epochs=3, offline_epochs=5, vae_batch_size=100, online_batches=5, online_epochs=5, iterations=6)))
    logged: Logged = []
    run_trial(config, task=ackley, log=lambda metrics, step: logged.append((step, dict(metrics))))
    gamma, predicted = series(logged, "cbas/gamma"), series(logged, "cbas/predicted_mean")
    assert gamma[-1] > gamma[0] and predicted[-1] > predicted[0]


def test_bo_qei_answer_is_the_top_of_its_history(quick_run, ackley: Task) -> None:
    """The answer: the best training designs by score, plus the search points whose labels beat them."""
    result, logged = quick_run("bo-qei", task=ackley)
    settings = bo_qei.Settings(**bo_qei.QUICK)
    designs = result.proposal.designs
    from_search = round(result.summary["final_from_search"] * 128)
    best_first = ackley.x[np.argsort(-ackley.y[:, 0], kind="stable")]
    close = np.isclose(designs[:, None, :], best_first[None, : settings.bo_gp_samples, :], rtol=1e-5, atol=1e-5)
    is_training = close.all(-1)  # encode/decode round trip: equal up to float32 rounding
    assert is_training.any(1).sum() == 128 - from_search
    np.testing.assert_array_equal(np.sort(is_training.any(0).nonzero()[0]), np.arange(128 - from_search))
    low, high = ackley.x.min(0), ackley.x.max(0)
    assert np.all(designs >= low - 1e-4) and np.all(designs <= high + 1e-4)  # qEI searched the data's box

    acquisition, best = series(logged, "bo/acquisition_value"), series(logged, "bo/best_label")
    assert len(acquisition) == len(best) == len(series(logged, "bo/best_ensemble_score")) == settings.bo_iterations
    assert all(math.isfinite(a) and a >= 0 for a in acquisition)
    assert best == sorted(best)
