"""CbAS and BO-qEI: method properties (the generic checks are in test_baselines.py, the GP's
kernel and likelihood in test_protocol.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ignite_mbo.baselines import bo_qei, cbas
from ignite_mbo.baselines.base import Context
from ignite_mbo.baselines.ensemble import token_space, train_ensemble
from ignite_mbo.config import TrialConfig
from ignite_mbo.streams import Streams
from ignite_mbo.tasks import Task
from ignite_mbo.trial import run_trial

from baseline_checks import Logged, series

SMALL_ENSEMBLE = {"hidden_size": 16, "embedding_size": 8, "epochs": 2, "batch_size": 1000}


def test_cbas_logs_each_iteration(quick_run) -> None:
    options = {**SMALL_ENSEMBLE, "offline_epochs": 5}
    result, logged = quick_run("cbas", options=options)
    settings = cbas.Settings(**{**cbas.QUICK, **options})
    for key in ("cbas/gamma", "cbas/predicted_mean", "cbas/ess", "cbas/vae_train_loss", "cbas/vae_val_loss"):
        values = series(logged, key)
        assert len(values) == settings.iterations and all(math.isfinite(v) for v in values), key
    samples = settings.online_batches * settings.vae_batch_size
    assert all(1.0 <= ess <= samples for ess in series(logged, "cbas/ess"))
    assert result.summary["final_gamma"] == series(logged, "cbas/gamma")[-1]
    assert len(series(logged, "prior_vae/train_loss")) == settings.offline_epochs


def test_cbas_first_weights_are_the_raw_probabilities_of_beating_gamma(ackley: Task) -> None:
    """At the first iteration q = p, so the (unrescaled) weights are the ensemble mixture's P(y > γ)."""
    settings = cbas.Settings(**{**cbas.QUICK, "online_batches": 4, "epochs": 3})
    ctx = Context(Streams(0))
    surrogate = train_ensemble(ackley, token_space(ackley), ctx, settings)
    prior = cbas.DesignVAE(ackley.design_shape, None, settings)
    search = cbas.CbAS(surrogate, prior, settings, ctx, torch.Generator().manual_seed(1))
    x, weights, stats = search.weighted_samples()
    assert x.shape == (400, 60) and weights.shape == (400,)
    means, stds = cbas.ensemble_predictive(surrogate, x)
    assert means.shape == stds.shape == (400, 5)
    exceed = torch.special.ndtr((means - stats["gamma"]) / stds).mean(dim=1)
    torch.testing.assert_close(weights, exceed, rtol=1e-5, atol=1e-7)
    assert torch.all(weights <= 1.0) and weights.mean().item() < 1.0  # not rescaled to mean 1
    above = means.mean(dim=1) > stats["gamma"]
    assert weights[above].mean() > weights[~above].mean()


def test_cbas_encoder_scale_is_the_softplus_of_the_clipped_log_std(tf_bind_8: Task) -> None:
    """The reference's encoder scale is softplus of the soft-clipped log std (its decoder uses exp)."""
    settings = cbas.Settings(**cbas.QUICK)
    vae = cbas.DesignVAE(tf_bind_8.design_shape, tf_bind_8.num_classes, settings)
    with torch.no_grad():
        for layer in vae.encoder:  # large outputs, so that the clipping shows
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(50.0)
        tokens = torch.as_tensor(tf_bind_8.x[:256], dtype=torch.int64)
        posterior = vae.encode(tokens)
        _, logstd = vae.encoder(vae.embed(tokens)).chunk(2, dim=-1)
        low, high = vae.encoder_logstd_bounds
        clipped = low + F.softplus(high - F.softplus(high - logstd) - low)
        torch.testing.assert_close(posterior.scale, F.softplus(clipped))
    assert not torch.allclose(posterior.scale, clipped.exp())  # the decoder's exp would differ
    assert posterior.scale.min() >= F.softplus(torch.tensor(math.log(0.1)))  # the clip keeps log σ above log 0.1


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
    assert result.summary["bo_rounds"] == settings.bo_iterations


def test_bo_qei_gp_fit_is_warm_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round's GP starts from the previous round's hyperparameters, with its own noise."""
    monkeypatch.setattr(bo_qei, "fit_gpytorch_mll", lambda mll: mll)  # no optimisation: see where it starts
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(30, 4, generator=generator, dtype=torch.float64)
    y = torch.randn(30, 1, generator=generator, dtype=torch.float64)
    previous = bo_qei.reference_gp(x[:20], y[:20], 0.1)
    with torch.no_grad():
        previous.covar_module.base_kernel.lengthscale = torch.tensor([[0.3, 0.5, 0.7, 0.9]], dtype=torch.float64)
        previous.covar_module.outputscale = torch.tensor(2.5, dtype=torch.float64)
        previous.mean_module.constant.fill_(0.25)
    warm = bo_qei.fit_gp(x, y, 0.1, previous)
    cold = bo_qei.fit_gp(x, y, 0.1, None)
    torch.testing.assert_close(warm.covar_module.base_kernel.lengthscale,
                               previous.covar_module.base_kernel.lengthscale.detach())
    assert float(warm.covar_module.outputscale) == pytest.approx(2.5)
    assert float(warm.mean_module.constant) == pytest.approx(0.25)
    assert not torch.allclose(cold.covar_module.base_kernel.lengthscale, warm.covar_module.base_kernel.lengthscale)
    torch.testing.assert_close(warm.likelihood.noise, torch.full((30,), 0.01, dtype=torch.float64))
