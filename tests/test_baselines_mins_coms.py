"""MINs and COMs: method properties (the generic checks are in test_baselines.py, the paper's
epochs in test_protocol.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ignite_mbo.baselines import coms, mins
from ignite_mbo.models import StackedMLP
from ignite_mbo.tasks import Task

from baseline_checks import SMOKE

REGULARIZERS = ("none", "ignite", "ignite2")
MINS_SMALL = {**SMOKE["mins"], "forward_epochs": 2, "gan_epochs": 3}
COMS_SMALL = {"hidden_size": 64, "batch_size": 512}  # the paper's 2 epochs and 500 validation rows


# ---- COMs -------------------------------------------------------------------------------------


def test_coms_logs_alpha_gap_and_mse_per_epoch(quick_run) -> None:
    result, logged = quick_run("coms", "ignite", options=COMS_SMALL)
    per_epoch = [metrics for _, metrics in logged if "coms/alpha" in metrics]
    assert len(per_epoch) == coms.Settings(**coms.QUICK).epochs == 2
    for metrics in per_epoch:
        for key in ("alpha", "train_overestimation", "train_mse", "val_overestimation", "val_mse", "lambda"):
            assert math.isfinite(metrics[f"coms/{key}"]), key
    assert result.proposal.surrogates[0].history[-1]["alpha"] == result.summary["final_alpha"]
    assert result.summary["final_alpha"] != pytest.approx(coms.Settings().initial_alpha)  # α adapted


def test_coms_search_climbs_the_regularized_model(quick_run) -> None:
    plain, _ = quick_run("coms", "none", options=COMS_SMALL)
    ignite2, _ = quick_run("coms", "ignite2", options=COMS_SMALL)
    assert plain.summary["regularizer_affects_search"] and ignite2.summary["regularizer_affects_search"]
    kernels = [result.proposal.surrogates[0].model.kernels[0] for result in (plain, ignite2)]
    assert not torch.equal(*kernels)  # the regularizer changed the model the search climbs
    assert not np.array_equal(plain.proposal.designs, ignite2.proposal.designs)


@pytest.mark.parametrize(("gap", "grows"), [(5.0, True), (-1.0, False)])
def test_coms_dual_ascent_direction(gap: float, grows: bool) -> None:
    """α rises while the overestimation gap exceeds τ and falls below it."""
    loss = coms.ConservativeLoss(initial_alpha=0.1, alpha_lr=0.01, overestimation_limit=2.0,
                                 particle_lr=0.1, particle_steps=1)
    loss._dual_step(torch.tensor(gap))
    assert (loss.alpha > 0.1) is grows


def test_coms_loss_is_conservative_and_steps_alpha_only_in_training() -> None:
    model = StackedMLP(6, 16, 2, 1, activation="relu", generators=[torch.Generator().manual_seed(0)])
    loss = coms.ConservativeLoss(initial_alpha=0.1, alpha_lr=0.01, overestimation_limit=2.0,
                                 particle_lr=0.05, particle_steps=10)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=generator), torch.randn(32, 1, generator=generator)
    with torch.no_grad():  # as in the validation pass: the ascent must still work
        climbed = loss.adversarial_designs(model, x)
        assert model(climbed).mean() > model(x).mean()

    model.eval()
    value, mean = loss(model, x, y, torch.ones(1, 32))
    assert loss.alpha == pytest.approx(0.1)  # no dual step in the validation pass
    model.train()
    value, mean = loss(model, x, y, torch.ones(1, 32))
    assert value.shape == mean.shape == (1,)
    mse = ((model(x) - y) ** 2).mean()
    assert float(value.detach()) != pytest.approx(float(mse.detach()))  # the conservative term is in the loss
    torch.testing.assert_close(mean, model(x).mean().reshape(1))  # G from the same forward pass, clean x
    assert loss.alpha != pytest.approx(0.1)  # one dual step per training batch
    metrics = loss.epoch_metrics()
    assert set(metrics) == {"alpha", "train_mse", "train_overestimation", "val_mse", "val_overestimation"}


# ---- MINs -------------------------------------------------------------------------------------


def test_mins_designs_do_not_depend_on_the_regularizer(quick_run) -> None:
    results = [quick_run("mins", regularizer, options=MINS_SMALL)[0] for regularizer in REGULARIZERS]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].proposal.designs, other.proposal.designs)
    lambdas = {result.summary["final_lambda"] for result in results}
    assert len(lambdas) == 3  # ... although each trained a differently regularized forward model
    assert not any(result.summary["regularizer_affects_search"] for result in results)


def test_mins_logs_gan_losses_per_epoch(quick_run) -> None:
    result, logged = quick_run("mins", "ignite", options=MINS_SMALL)
    per_epoch = [metrics for _, metrics in logged if "gan/generator_loss" in metrics]
    assert len(per_epoch) == MINS_SMALL["gan_epochs"]
    for metrics in per_epoch:
        for key in ("gan/generator_loss", "gan/critic_loss", "gan/wasserstein", "gan/penalty"):
            assert math.isfinite(metrics[key]), key
    temps = [metrics["gan/temp"] for metrics in per_epoch]
    assert temps[0] == mins.Settings().start_temp and temps[-1] == mins.Settings().final_temp
    assert len([metrics for _, metrics in logged if "forward/lambda" in metrics]) == MINS_SMALL["forward_epochs"]
    assert math.isfinite(result.summary["final_generator_loss"])


def test_mins_score_weights_favour_high_scores() -> None:
    y = np.random.default_rng(0).normal(size=(5000, 1)).astype(np.float32)
    weights = mins.score_weights(y, base_temp=0.1)
    assert weights.shape == y.shape and (weights >= 0).all() and (weights <= 5.0).all()
    order = np.argsort(y[:, 0])
    assert weights[order[-50:]].mean() > weights[order[:2500]].mean()


def test_mins_one_hot_space_round_trip(tf_bind_8: Task) -> None:
    space = mins.OneHotSpace(tf_bind_8.design_shape, tf_bind_8.num_classes)
    features = space.encode(tf_bind_8.x[:10])
    assert features.shape == (10, 8 * 4) and space.num_features == 32
    assert torch.all(features.reshape(10, 8, 4).sum(-1) == 1)
    np.testing.assert_array_equal(space.decode(features), tf_bind_8.x[:10])


def test_mins_relaxed_samples_are_distributions() -> None:
    # seeded: with unseeded logits this depended on the global RNG state the tests before it left (about 4
    # draws in 10 have some position whose top two logits+noise are within ~0.01, where T=1e-3 is not yet hard)
    logits = torch.randn(16, 8, 4, generator=torch.Generator().manual_seed(1))
    sample = mins.relaxed_one_hot(logits, 0.5, torch.Generator().manual_seed(0))
    assert torch.allclose(sample.sum(-1), torch.ones(16, 8))
    hard = mins.relaxed_one_hot(logits, 1e-3, torch.Generator().manual_seed(0))
    assert torch.allclose(hard.max(-1).values, torch.ones(16, 8), atol=1e-3)


def test_mins_gan_layer_norms_use_keras_epsilon() -> None:
    generator, critic = mins.Generator((8, 4), 32, 16, discrete=True), mins.Critic((8, 4), 16)
    norms = [m for model in (generator, critic) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 6 and all(norm.eps == 1e-3 for norm in norms)
