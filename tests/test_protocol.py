"""The paper's protocol (issue 7): each way the reference code runs a baseline, pinned by a test.

Items, in the issue's order: x normalisation (1), COMs' epochs (2), REINFORCE's loss (3),
ENS-MEAN's reduction (4), Keras initialisation (5), bootstrap weights (6), TF-Bind-10's per-seed
subsample (7, skipped until it lands), BO-qEI's GP (8), MINs' GAN epochs (9); then λ's projection,
quick-fidelity GA on TF-Bind-8, and the ``protocol_deviations`` a trial reports.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ignite_mbo.baselines import bo_qei, coms, grad_ascent, load, mins, names, reinforce
from ignite_mbo.baselines.base import Context, Proposal, TrainedSurrogate, solver_learning_rate
from ignite_mbo.config import TrialConfig
from ignite_mbo.design_space import DesignSpace, TokenSpace
from ignite_mbo.models import GaussianEnsemble, StackedMLP, gaussian_nll, keras_init
from ignite_mbo.protocol import protocol_deviations
from ignite_mbo.regularizers import IgniteConfig, SharpnessConstraint, build
from ignite_mbo.streams import Streams
from ignite_mbo.tasks import Task
from ignite_mbo.tasks.tfbind import make_tf_bind_10
from ignite_mbo.training import FitSettings, Splits, draw_splits

from baseline_checks import SMOKE

DATASET_BEST = 0.439  # TF-Bind-8: the best normalised score among the training designs


# ---- helpers: a tiny task, the Design-Bench formula, and a Context that records every fit --------


def toy_task() -> Task:
    """40 designs of 5 tokens (4 classes); position 2 is always token 3, so its features never vary."""
    x = np.random.default_rng(0).integers(0, 4, size=(40, 5))
    x[:, 2] = 3
    y = x.sum(axis=1, keepdims=True).astype(np.float32)
    return Task("toy", x, y, oracle=lambda designs: designs.sum(axis=1, keepdims=True).astype(np.float32),
                y_min=0.0, y_max=15.0, num_classes=4)


def design_bench_logits(x: np.ndarray, num_classes: int) -> np.ndarray:
    """Design-Bench's ``to_logits``, flat and in float64: log(0.6·one-hot + 0.4/classes) minus class
    0's, rounded to float32 as Design-Bench stores them."""
    log_p = np.log(0.6 * np.eye(num_classes)[x] + 0.4 / num_classes)
    return (log_p[..., 1:] - log_p[..., :1]).reshape(len(x), -1).astype(np.float32).astype(np.float64)


@dataclass
class Fit:
    """One ``Context.fit`` call as it started: the model's initial weights and what it trains on."""

    name: str
    initial: dict[str, torch.Tensor]
    space: DesignSpace
    x: torch.Tensor
    settings: FitSettings
    splits: Splits


@dataclass
class RecordingContext(Context):
    """A Context that records each fit as it starts, then trains it as usual."""

    fits: list[Fit] = field(default_factory=list)

    def fit(self, name, model, space, x, y, settings, splits, loss=gaussian_nll) -> TrainedSurrogate:
        initial = {key: value.detach().clone() for key, value in model.state_dict().items()}
        self.fits.append(Fit(name, initial, space, x, settings, splits))
        return super().fit(name, model, space, x, y, settings, splits, loss)


def propose(baseline: str, task: Task, **options: Any) -> tuple[Proposal, RecordingContext]:
    """``baseline``'s proposal with IGNITE at smoke size (``SMOKE`` on top of ``QUICK``, then ``options``), seed 0."""
    declared = load(baseline)
    settings = declared.settings("quick", {**SMOKE[baseline], **options})
    ctx = RecordingContext(Streams(0), regularizer=IgniteConfig())
    return declared.propose(task, settings, ctx), ctx


@pytest.fixture(scope="module")
def smoke(tf_bind_8: Task) -> dict[str, tuple[Proposal, RecordingContext]]:
    """Every baseline's smoke-size proposal on TF-Bind-8 with its recorded fit (one each)."""
    return {baseline: propose(baseline, tf_bind_8) for baseline in names()}


# ---- 1. x normalisation --------------------------------------------------------------------------


def test_normalisation_statistics_follow_the_formula() -> None:
    """Mean and population std over all training rows; a feature that never varies gets std 1."""
    task = toy_task()
    logits = design_bench_logits(task.x, 4)
    space = DesignSpace.for_task(task, normalize=True)
    std = logits.std(axis=0)  # ddof 0
    assert (std == 0).sum() == 3  # position 2's three features
    np.testing.assert_allclose(space.mean, logits.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(space.std, np.where(std == 0, 1.0, std), rtol=1e-6)
    expected = (logits - logits.mean(axis=0)) / np.where(std == 0, 1.0, std)
    np.testing.assert_allclose(space.encode(task.x).numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(space.decode(space.encode(task.x)), task.x)

    raw = DesignSpace.for_task(task, normalize=False)
    assert raw.mean is None and raw.std is None
    np.testing.assert_allclose(raw.encode(task.x).numpy(), logits, atol=1e-6)


def test_tf_bind_8_statistics_use_the_population_std(tf_bind_8: Task) -> None:
    logits = design_bench_logits(tf_bind_8.x, 4)
    space = DesignSpace.for_task(tf_bind_8, normalize=True)
    np.testing.assert_allclose(space.mean, logits.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(space.std, logits.std(axis=0, ddof=0), rtol=1e-6)  # ddof=1 is 1.5e-5 larger
    assert space.std.min() > 1.2  # z-scoring changes the scale: raw logits' std is 1.25–1.39 on TF-Bind-8


KINDS = {"grad-ascent": "z-scored logits", "ens-mean": "z-scored logits", "ens-min": "z-scored logits",
         "bo-qei": "z-scored logits", "cma-es": "z-scored logits", "coms": "logits", "mins": "one-hot",
         "reinforce": "tokens", "cbas": "tokens", "roma": "z-scored logits", "ict": "z-scored logits"}
"""What each baseline's regularized model reads on TF-Bind (and its search moves in)."""


@pytest.mark.parametrize("baseline", names())
def test_which_baselines_train_on_z_scored_logits(smoke, tf_bind_8: Task, baseline: str) -> None:
    proposal, ctx = smoke[baseline]
    (fit,) = ctx.fits
    assert proposal.surrogates[0].space is fit.space  # the proposal decodes from the space it trained in
    kind = KINDS[baseline]
    if kind == "z-scored logits":
        reference = DesignSpace.for_task(tf_bind_8, normalize=True)
        assert type(fit.space) is DesignSpace
        np.testing.assert_array_equal(fit.space.mean, reference.mean)
        np.testing.assert_array_equal(fit.space.std, reference.std)
        torch.testing.assert_close(fit.x, reference.encode(tf_bind_8.x))
    elif kind == "logits":
        assert type(fit.space) is DesignSpace and fit.space.mean is None
        torch.testing.assert_close(fit.x, torch.from_numpy(design_bench_logits(tf_bind_8.x, 4)).float())
    elif kind == "one-hot":
        assert isinstance(fit.space, mins.OneHotSpace) and fit.x.shape == (len(tf_bind_8.x), 32)
    else:
        assert isinstance(fit.space, TokenSpace) and fit.x.dtype == torch.int64
        np.testing.assert_array_equal(fit.x.numpy(), tf_bind_8.x)


def test_grad_ascent_climbs_from_the_best_designs_in_z_space(tf_bind_8: Task, monkeypatch) -> None:
    """The search starts at the z-scored 128 best designs and steps 0.01·√features there."""
    calls = []

    def spy(score, start, **kwargs):
        calls.append((start.clone(), kwargs["learning_rate"]))
        return original(score, start, **kwargs)

    original = grad_ascent.gradient_ascent
    monkeypatch.setattr(grad_ascent, "gradient_ascent", spy)
    propose("grad-ascent", tf_bind_8)
    ((start, learning_rate),) = calls
    best = tf_bind_8.x[np.argsort(-tf_bind_8.y[:, 0], kind="stable")[:128]]
    torch.testing.assert_close(start, DesignSpace.for_task(tf_bind_8, normalize=True).encode(best))
    assert learning_rate == pytest.approx(0.01 * math.sqrt(24)) == solver_learning_rate(0.01, 24)


# ---- 2. COMs trains 2 epochs with 500 validation rows ----------------------------------------------


def test_coms_trains_two_epochs_with_500_validation_rows(smoke, tf_bind_8: Task) -> None:
    assert (coms.Settings().epochs, coms.Settings().validation_size) == (2, 500)
    assert "epochs" not in coms.QUICK and "validation_size" not in coms.QUICK  # quick fidelity keeps them
    proposal, ctx = smoke["coms"]
    (fit,) = ctx.fits
    assert fit.settings.epochs == 2 and len(proposal.surrogates[0].history) == 2
    assert fit.splits.validation.shape == (1, 500)
    assert fit.splits.training.shape == (1, len(tf_bind_8.x) - 500)


# ---- 3. REINFORCE's loss ---------------------------------------------------------------------------


def reinforce_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position log-probabilities (batch 6, length 4) and uncentred advantages (batch,)."""
    generator = torch.Generator().manual_seed(0)
    log_probs = torch.randn(6, 4, generator=generator, dtype=torch.float64).requires_grad_(True)
    return log_probs, torch.randn(6, generator=generator, dtype=torch.float64) + 0.5


def test_reinforce_default_loss_is_the_reference_broadcast() -> None:
    """``reduce_mean(-log_probs[:, tf.newaxis] * advantages)`` with advantages (batch, 1): (batch, batch, length)."""
    log_probs, advantage = reinforce_batch()
    advantages = advantage[:, None]  # (6, 1): the ensemble's predictions keep their last axis
    product = -log_probs[:, None, :] * advantages  # (6, 1, 4) * (6, 1): every design meets every advantage
    assert product.shape == (6, 6, 4)
    assert (log_probs[:, None, :] * advantages[:, None]).shape == (6, 1, 4)  # one more axis: not the reference
    loss = reinforce.policy_loss(log_probs, advantage, per_design_credit=False)
    torch.testing.assert_close(loss, product.mean())
    (expected,) = torch.autograd.grad(product.mean(), log_probs)
    (got,) = torch.autograd.grad(reinforce.policy_loss(log_probs, advantage, per_design_credit=False), log_probs)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got, torch.full_like(got, -float(advantage.mean()) / 24))  # −mean(A)/(B·L) each


def test_reinforce_per_design_credit_is_the_textbook_estimator() -> None:
    """−(1/B) Σ_i A_i Σ_l log π(x_il): each design's log-probability meets its own advantage."""
    log_probs, advantage = reinforce_batch()
    textbook = -sum(advantage[i] * log_probs[i].sum() for i in range(6)) / 6
    loss = reinforce.policy_loss(log_probs, advantage, per_design_credit=True)
    torch.testing.assert_close(loss, textbook)
    (got,) = torch.autograd.grad(loss, log_probs)
    torch.testing.assert_close(got, -advantage[:, None].expand(6, 4) / 6)
    assert not torch.allclose(loss, reinforce.policy_loss(log_probs, advantage, per_design_credit=False))


def test_reinforce_defaults_to_the_reference_loss() -> None:
    assert reinforce.Settings().per_design_credit is False
    assert "per_design_credit" not in reinforce.QUICK


# ---- 4. ENS-MEAN reduces with a min ------------------------------------------------------------------


@pytest.mark.parametrize(("options", "reduce"), [({}, "min"), ({"true_mean": True}, "mean")])
def test_ens_mean_aggregation(tf_bind_8: Task, monkeypatch, options: dict, reduce: str) -> None:
    """The score ens-mean climbs: the members' min by default (the reference), their mean with ``true_mean``."""
    scores = []

    def spy(score, start, **kwargs):
        scores.append(score)
        return original(score, start, **kwargs)

    original = grad_ascent.gradient_ascent
    monkeypatch.setattr(grad_ascent, "gradient_ascent", spy)
    proposal, _ = propose("ens-mean", tf_bind_8, **options)
    (score,) = scores
    model = proposal.surrogates[0].model
    x = torch.randn(16, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        members = model.predict_mean(x)
        expected = members.min(dim=0).values if reduce == "min" else members.mean(dim=0)
        torch.testing.assert_close(score(x), expected)
        assert not torch.allclose(members.min(dim=0).values, members.mean(dim=0))  # the two differ here


def test_ens_mean_by_default_searches_exactly_as_ens_min(tf_bind_8: Task) -> None:
    options = {"hidden_size": 32, "epochs": 1, "batch_size": 1024, "solver_steps": 200}  # enough steps to move
    ens_mean, _ = propose("ens-mean", tf_bind_8, **options)
    ens_min, _ = propose("ens-min", tf_bind_8, **options)
    true_mean, _ = propose("ens-mean", tf_bind_8, **options, true_mean=True)
    np.testing.assert_array_equal(ens_mean.designs, ens_min.designs)
    assert not np.array_equal(ens_mean.designs, true_mean.designs)


# ---- 5. Keras initialisation: Glorot-uniform kernels, zero biases, embeddings U(±0.05) ---------------


def glorot_bound(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))


def assert_uniform(values: torch.Tensor, bound: float) -> None:
    """Within ±bound and, given enough values to tell, filling it: extremes near ±bound, std near bound/√3."""
    assert values.abs().max() <= bound
    if values.numel() >= 1_000:
        assert values.max() > 0.98 * bound and values.min() < -0.98 * bound
    if values.numel() >= 10_000:
        assert float(values.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_gaussian_ensemble_is_keras_initialised() -> None:
    generators = [torch.Generator().manual_seed(seed) for seed in (1, 2, 3)]
    model = GaussianEnsemble(24, 512, 2, generators=generators, embedding=None)
    sizes = [24, 512, 512, 2]
    for kernel, bias, (fan_in, fan_out) in zip(model.kernels, model.biases, zip(sizes[:-1], sizes[1:]), strict=True):
        assert kernel.shape == (3, fan_out, fan_in)  # stored as nn.Linear stores them: (members, out, in)
        for member in kernel:
            assert_uniform(member.detach(), glorot_bound(fan_in, fan_out))
        assert torch.count_nonzero(bias) == 0
    assert not torch.equal(model.kernels[0][0], model.kernels[0][1])  # each member from its own generator
    again = GaussianEnsemble(24, 512, 2, generators=[torch.Generator().manual_seed(seed) for seed in (1, 2, 3)])
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))
    torch.testing.assert_close(model.max_logstd.detach(), torch.full((3, 1, 1), math.log(0.2)))
    torch.testing.assert_close(model.min_logstd.detach(), torch.full((3, 1, 1), math.log(0.1)))


def test_stacked_embeddings_are_uniform_within_five_hundredths() -> None:
    model = StackedMLP(8, 16, 1, 1, generators=[torch.Generator().manual_seed(0)], embedding=(4, 256))
    assert model.embedding.shape == (1, 4, 256)
    assert_uniform(model.embedding.detach(), 0.05)
    assert model.kernels[0].shape == (1, 8 * 256, 16)
    assert_uniform(model.kernels[0].detach(), glorot_bound(8 * 256, 16))


def test_keras_init_on_torch_layers() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Embedding(4, 300), nn.Linear(300, 200), nn.LayerNorm(200), nn.Linear(200, 3))
    keras_init(module, torch.Generator().manual_seed(1))
    embedding, first, norm, last = module
    assert_uniform(embedding.weight.detach(), 0.05)
    assert first.weight.shape == (200, 300)  # (out, in): the bound is symmetric, the shape must stay
    assert_uniform(first.weight.detach(), glorot_bound(300, 200))
    assert_uniform(last.weight.detach(), glorot_bound(200, 3))
    assert torch.count_nonzero(first.bias) == 0 and torch.count_nonzero(last.bias) == 0
    assert torch.equal(norm.weight, torch.ones(200)) and torch.equal(norm.bias, torch.zeros(200))


@pytest.mark.parametrize("baseline", names())
def test_every_regularized_model_starts_keras_initialised(smoke, baseline: str) -> None:
    (fit,) = smoke[baseline][1].fits
    biases = [value for key, value in fit.initial.items() if key.startswith("biases.")]
    kernels = [value for key, value in fit.initial.items() if key.startswith("kernels.")]
    assert biases and kernels  # a stacked model (models.StackedMLP / GaussianEnsemble)
    assert all(torch.count_nonzero(bias) == 0 for bias in biases)
    for kernel in kernels:
        for member in kernel:
            assert_uniform(member, glorot_bound(*member.shape))
    if "embedding" in fit.initial:
        assert_uniform(fit.initial["embedding"], 0.05)


# ---- 6. bootstrap weights ----------------------------------------------------------------------------


def assert_bootstrap_counts(weights: torch.Tensor) -> None:
    """Each member's weights: non-negative integers summing to its number of training rows, some 0."""
    rows = weights.shape[1]
    assert torch.all(weights >= 0) and torch.equal(weights, weights.round())
    assert torch.all(weights.sum(dim=1) == rows)
    zero = (weights == 0).float().mean(dim=1)  # (1 − 1/n)^n ≈ e⁻¹ of the rows are never drawn
    assert torch.all((zero > 0.3) & (zero < 0.45))


def test_draw_splits_shared_and_independent_pipelines() -> None:
    shared = draw_splits(1000, 3, 100, Streams(0), "s", bootstrap=True, shared=True)
    assert shared.shared and shared.validation.shape == (3, 100) and shared.training.shape == (3, 900)
    assert torch.equal(shared.training[0], shared.training[2]) and len(set(shared.order_seeds)) == 1
    assert_bootstrap_counts(shared.weights)
    assert not torch.equal(shared.weights[0], shared.weights[1])  # one pipeline, each member its own counts

    own = draw_splits(1000, 3, 100, Streams(0), "s", bootstrap=True, shared=False)
    assert not own.shared and len(set(own.order_seeds)) == 3
    assert not torch.equal(own.validation[0], own.validation[1])
    assert_bootstrap_counts(own.weights)
    for m in range(3):  # every row is either validated or trained on, once
        assert torch.equal(torch.cat([own.validation[m], own.training[m]]).sort().values, torch.arange(1000))

    plain = draw_splits(1000, 2, 100, Streams(0), "s", bootstrap=False, shared=True)
    assert torch.equal(plain.weights, torch.ones(2, 900))


PIPELINES = {  # members, one shared pipeline (or one per member), bootstrap counts
    "grad-ascent": (1, False, True), "ens-mean": (5, False, True), "ens-min": (5, False, True),
    "reinforce": (5, True, True), "cbas": (5, True, True), "bo-qei": (5, True, True), "cma-es": (5, True, True),
    "mins": (1, True, True), "coms": (1, True, False), "roma": (1, True, False), "ict": (3, False, False),
}


@pytest.mark.parametrize("baseline", names())
def test_each_baseline_weights_its_rows_as_the_reference(smoke, baseline: str) -> None:
    """GA and its ensembles: a pipeline per model with ``bootstraps=1``; the small ensembles: one
    pipeline with ``bootstraps=5``; MINs' forward model ``bootstraps=1``; COMs unweighted."""
    (fit,) = smoke[baseline][1].fits
    members, shared, bootstrap = PIPELINES[baseline]
    assert fit.splits.num_members == members
    if members > 1:
        assert fit.splits.shared is shared
    if bootstrap:
        assert_bootstrap_counts(fit.splits.weights)
    else:
        assert torch.equal(fit.splits.weights, torch.ones_like(fit.splits.weights))


# ---- 7. TF-Bind-10's training subsample ---------------------------------------------------------------


# tests/test_tasks.py::test_each_trial_draws_its_own_tf_bind_10_training_set pins it through run_trial.


# ---- 8. BO-qEI's GP ------------------------------------------------------------------------------------


def test_reference_gp_kernel_and_likelihood() -> None:
    from gpytorch.kernels import MaternKernel, ScaleKernel
    from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
    from gpytorch.means import ConstantMean

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20, 6, generator=generator, dtype=torch.float64)
    y = torch.randn(20, 1, generator=generator, dtype=torch.float64) + 3.0
    gp = bo_qei.reference_gp(x, y, noise_se=0.1)
    kernel = gp.covar_module
    assert isinstance(kernel, ScaleKernel) and isinstance(kernel.base_kernel, MaternKernel)
    assert kernel.base_kernel.nu == 2.5 and kernel.base_kernel.ard_num_dims == 6
    assert kernel.base_kernel.lengthscale.shape == (1, 6)
    lengthscale_prior, outputscale_prior = kernel.base_kernel.lengthscale_prior, kernel.outputscale_prior
    assert (float(lengthscale_prior.concentration), float(lengthscale_prior.rate)) == (3.0, 6.0)
    assert (float(outputscale_prior.concentration), float(outputscale_prior.rate)) == pytest.approx((2.0, 0.15))
    assert isinstance(gp.mean_module, ConstantMean)
    assert isinstance(gp.likelihood, FixedNoiseGaussianLikelihood)
    torch.testing.assert_close(gp.likelihood.noise, torch.full((20,), 0.01, dtype=torch.float64))
    assert getattr(gp, "outcome_transform", None) is None and getattr(gp, "input_transform", None) is None
    torch.testing.assert_close(gp.train_targets, y[:, 0])  # the labels as given: no standardisation
    torch.testing.assert_close(gp.train_inputs[0], x)


def test_bo_qei_fits_the_reference_gp_on_z_scored_logits(tf_bind_8: Task, monkeypatch) -> None:
    gps = []

    def spy(x, y, noise_se):
        gps.append(original(x, y, noise_se))
        return gps[-1]

    original = bo_qei.reference_gp
    monkeypatch.setattr(bo_qei, "reference_gp", spy)
    propose("bo-qei", tf_bind_8)
    assert len(gps) == SMOKE["bo-qei"]["bo_iterations"]
    best = tf_bind_8.x[np.argsort(-tf_bind_8.y[:, 0], kind="stable")[:500]]
    first_inputs = gps[0].train_inputs[0]
    assert first_inputs.shape == (500, 24)
    torch.testing.assert_close(first_inputs.float(), DesignSpace.for_task(tf_bind_8, normalize=True).encode(best))


# ---- 9. MINs' GAN epochs -------------------------------------------------------------------------------


def test_mins_gan_epochs_per_task(tf_bind_8: Task, tf_bind_10: Task) -> None:
    paper = mins.Settings()
    assert paper.gan_epochs is None and "gan_epochs" in mins.QUICK  # quick fidelity sets its own
    assert mins.gan_epochs(tf_bind_8, paper) == 200
    assert mins.gan_epochs(tf_bind_10, paper) == 100
    assert mins.gan_epochs(tf_bind_10, mins.Settings(gan_epochs=7)) == 7


# ---- λ: not projected by default, projected when asked ----------------------------------------------------


@pytest.mark.parametrize("project", [False, True])
def test_lambda_goes_negative_unless_projected(project: bool) -> None:
    """With ε far above ρ‖∇G‖ dual ascent drives λ down: below 0 as the reference does, or to 0 when projected."""
    assert IgniteConfig().project_lambda is False and build("ignite").project_lambda is False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=generator)
    y = x[:, :1] * 2
    ctx = Context(Streams(0), regularizer=IgniteConfig(epsilon=100.0, lambda_lr=0.01, project_lambda=project))
    model = GaussianEnsemble(6, 16, 1, generators=ctx.generators("toy/init", 2))
    splits = draw_splits(300, 2, 50, ctx.streams, "toy", bootstrap=True, shared=False)
    surrogate = ctx.fit("toy", model, DesignSpace((6,), None), x, y, FitSettings(2, 64, 1e-2, 50), splits)
    assert isinstance(surrogate.regularizer, SharpnessConstraint)
    lambdas = surrogate.regularizer.lambdas()
    assert len(lambdas) == 2
    if project:
        assert lambdas == [0.0, 0.0]
    else:
        assert all(value < -0.5 for value in lambdas)


# ---- quick-fidelity GA on TF-Bind-8 moves its designs -------------------------------------------------------


def test_quick_grad_ascent_moves_the_median_design_past_the_dataset_best(quick_run, tf_bind_8: Task) -> None:
    assert float(tf_bind_8.normalize_score(tf_bind_8.y.max())) == pytest.approx(DATASET_BEST, abs=5e-4)
    medians = [quick_run("grad-ascent", seed=seed)[0].summary["score_50th"] for seed in range(4)]
    assert np.mean(medians) > DATASET_BEST, medians


# ---- protocol_deviations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "deviations"), [
    ({}, []),
    ({"baseline": "coms", "regularizer": "ignite"}, []),
    ({"baseline": "mins", "regularizer": "ignite2"}, []),
    ({"baseline": "grad-ascent", "baseline_options": {"epochs": 100}}, []),  # the paper's value, spelled out
    ({"fidelity": "quick"}, ["fidelity=quick"]),
    ({"baseline": "reinforce", "baseline_options": {"per_design_credit": True}}, ["per_design_credit=True"]),
    ({"baseline": "ens-mean", "baseline_options": {"true_mean": True}}, ["true_mean=True"]),
    ({"baseline": "coms", "baseline_options": {"epochs": 50}}, ["epochs=50"]),
    ({"regularizer": {"name": "ignite", "rho": 0.1}}, ["regularizer.rho=0.1"]),
    ({"regularizer": {"name": "ignite", "project_lambda": True}}, ["regularizer.project_lambda=True"]),
    ({"task": "TFBind10-Exact-v0", "task_options": {"max_samples": 5000}}, ["task.max_samples=5000"]),
    ({"fidelity": "quick", "baseline": "reinforce", "baseline_options": {"per_design_credit": True},
      "regularizer": {"name": "ignite", "rho": 0.1}},
     ["fidelity=quick", "per_design_credit=True", "regularizer.rho=0.1"]),
])
def test_protocol_deviations(config: dict, deviations: list[str]) -> None:
    assert protocol_deviations(TrialConfig.parse(config)) == deviations


def test_a_task_option_at_its_default_is_not_a_deviation() -> None:
    """TF-Bind-10's default ``max_samples`` is the paper's 10,000: spelling it out changes nothing."""
    assert inspect.signature(make_tf_bind_10).parameters["max_samples"].default == 10_000
    config = TrialConfig.parse({"task": "TFBind10-Exact-v0", "task_options": {"max_samples": 10_000}})
    assert protocol_deviations(config) == []


def test_a_trial_reports_its_deviations(quick_run) -> None:
    result, _ = quick_run("reinforce", options={**SMOKE["reinforce"], "per_design_credit": True})
    deviations = result.summary["protocol_deviations"].split(",")
    assert deviations[0] == "fidelity=quick" and deviations[-1] == "per_design_credit=True"
