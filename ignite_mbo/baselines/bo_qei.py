"""Batch Bayesian optimisation with q-Expected Improvement on an ensemble's predictions (BO-qEI).

Reference: design-baselines ``bo_qei`` as the IGNITE code runs it (``bo_qei_IGNITE``, TF-Bind
configs, BoTorch 0.3.3 at the time). A bootstrap ensemble of five small Gaussian MLPs on z-scored
logits (``normalize_xs``) plays the black box. The history starts from the ``bo_gp_samples`` best
training designs with their (z-scored) dataset scores. Each iteration fits a fixed-noise GP
(noise ``bo_noise_se``²) with BoTorch 0.3's kernel — a Matern-5/2 ARD kernel with a Gamma(3, 6)
lengthscale prior inside a ScaleKernel with a Gamma(2, 0.15) outputscale prior — and no input or
outcome transform, warm-started from the previous iteration's hyperparameters; maximises
``qExpectedImprovement`` over ``bo_batch_size`` points inside the data's bounding box; labels the
batch with the ensemble's mean prediction plus N(0, ``bo_noise_se``²) noise and appends it. If the
acquisition optimiser fails, the search stops with the history it has (as the reference does).
The answer is the ``num_designs`` best points of the history by label, decoded to raw designs.

Regularized models: the five ensemble members (each with its own λ); the GP is not.
docs/fidelity.md lists every known difference from the reference.
"""

from __future__ import annotations

import warnings

import torch
from botorch.acquisition.monte_carlo import qExpectedImprovement
from botorch.exceptions import BadInitialCandidatesWarning
from botorch.exceptions.warnings import NumericsWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.optim import optimize_acqf
from botorch.sampling.normal import SobolQMCNormalSampler
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior
from pydantic import Field, model_validator

from ignite_mbo.baselines.base import Baseline, Context, Count, Proposal, Rate
from ignite_mbo.baselines.ensemble import ENSEMBLE_QUICK, EnsembleSettings, ensemble_mean, train_ensemble
from ignite_mbo.design_space import DesignSpace, TargetScaler
from ignite_mbo.tasks import Task


class Settings(EnsembleSettings):
    """design-baselines' bo_qei TF-Bind configuration (the ensemble fields come from ``EnsembleSettings``)."""

    bo_noise_se: Rate = Field(0.1, description="noise std of the GP and of the labels of new points")
    bo_gp_samples: Count = Field(500, description="best training designs that start the history")
    bo_batch_size: Count = Field(32, description="points proposed per BO round (q)")
    bo_num_restarts: Count = Field(10, description="restarts of the acquisition optimiser")
    bo_raw_samples: Count = Field(128, description="raw samples that seed the acquisition optimiser's restarts")
    bo_batch_limit: Count = Field(5, description="restarts optimised together in one batch")
    bo_maxiter: Count = Field(200, description="L-BFGS iterations of the acquisition optimiser at most")
    bo_iterations: Count = Field(10, description="BO rounds")
    bo_mc_samples: Count = Field(128, description="quasi-Monte-Carlo samples of qEI")

    @model_validator(mode="after")
    def _history_holds_the_answer(self) -> Settings:
        if self.bo_gp_samples + self.bo_iterations * self.bo_batch_size < self.num_designs:
            raise ValueError("bo_gp_samples + bo_iterations * bo_batch_size must be at least num_designs")
        if self.bo_raw_samples < self.bo_num_restarts:  # BoTorch would fail every round: a search of 0 rounds
            raise ValueError("bo_raw_samples must be at least bo_num_restarts (the restarts start from raw samples)")
        return self


QUICK = {**ENSEMBLE_QUICK, "bo_batch_size": 8, "bo_num_restarts": 2, "bo_raw_samples": 32, "bo_maxiter": 20,
         "bo_iterations": 3, "bo_mc_samples": 32}
"""Quick fidelity: the ensemble's quick settings, a quarter of the batch and restarts, a third of the rounds."""


def reference_gp(x: torch.Tensor, y: torch.Tensor, noise_se: float) -> SingleTaskGP:
    """The reference's GP: fixed noise, ScaleKernel(Matern-5/2 ARD) with BoTorch 0.3's Gamma priors,
    constant mean, no input or outcome transform."""
    kernel = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=x.shape[-1], lengthscale_prior=GammaPrior(3.0, 6.0)),
                         outputscale_prior=GammaPrior(2.0, 0.15))
    return SingleTaskGP(x, y, train_Yvar=torch.full_like(y, noise_se**2), covar_module=kernel,
                        outcome_transform=None)


def fit_gp(x: torch.Tensor, y: torch.Tensor, noise_se: float, previous: SingleTaskGP | None) -> SingleTaskGP:
    """Fit the reference GP by marginal likelihood, starting from ``previous``'s hyperparameters."""
    gp = reference_gp(x, y, noise_se)
    if previous is not None:
        hyperparameters = {key: value for key, value in previous.state_dict().items() if "noise_covar" not in key}
        gp.load_state_dict(hyperparameters, strict=False)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = DesignSpace.for_task(task, normalize=True)
    surrogate = train_ensemble(task, space, ctx, settings)
    predict = ensemble_mean(surrogate)

    features = space.encode(task.x).double()
    bounds = torch.stack([features.min(dim=0).values, features.max(dim=0).values])
    targets = TargetScaler.fit(task.y).transform(task.y).double()

    def label(x: torch.Tensor) -> torch.Tensor:
        """The ensemble's mean prediction for features, (n, 1), float64."""
        with torch.no_grad():
            return predict(x.float().to(ctx.device)).double().cpu()

    best = torch.argsort(targets[:, 0], descending=True, stable=True)[: settings.bo_gp_samples]
    history_x, history_y = features[best], targets[best]
    noise = ctx.streams.torch("bo/label_noise")
    gp: SingleTaskGP | None = None
    acquisition_value, rounds = float("nan"), 0
    ctx.progress.phase("BO rounds", settings.bo_iterations)
    for iteration in range(settings.bo_iterations):
        torch.manual_seed(ctx.streams.seed(f"bo/restarts/{iteration}"))  # BoTorch's restarts draw from the global RNG
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumericsWarning)
            warnings.simplefilter("ignore", BadInitialCandidatesWarning)
            gp = fit_gp(history_x, history_y, settings.bo_noise_se, gp)
            sampler = SobolQMCNormalSampler(torch.Size([settings.bo_mc_samples]),
                                            seed=ctx.streams.seed(f"bo/sobol/{iteration}") % 2**31)
            acquisition = qExpectedImprovement(gp, best_f=history_y.max(), sampler=sampler)
            try:
                candidates, value = optimize_acqf(
                    acquisition, bounds=bounds, q=settings.bo_batch_size, num_restarts=settings.bo_num_restarts,
                    raw_samples=settings.bo_raw_samples,
                    options={"batch_limit": settings.bo_batch_limit, "maxiter": settings.bo_maxiter})
            except RuntimeError as error:  # the reference ends the search here, keeping its history
                ctx.log({"bo/stopped_early": 1.0}, iteration)
                ctx.progress.advance(settings.bo_iterations - iteration)
                warnings.warn(f"BO-qEI stopped after {iteration} rounds: {error}", RuntimeWarning, stacklevel=1)
                break
        candidates = candidates.detach()
        observed = label(candidates) + settings.bo_noise_se * torch.randn(len(candidates), 1, generator=noise,
                                                                          dtype=torch.float64)
        history_x, history_y = torch.cat([history_x, candidates]), torch.cat([history_y, observed])
        acquisition_value, rounds = float(torch.as_tensor(value).max()), iteration + 1
        ctx.log({"bo/acquisition_value": acquisition_value, "bo/best_label": float(history_y.max()),
                 "bo/best_ensemble_score": float(label(history_x).max())}, iteration)
        ctx.progress.advance()

    top = torch.argsort(history_y[:, 0], descending=True, stable=True)[: settings.num_designs]
    metrics = {"final_acquisition_value": acquisition_value, "final_best_label": float(history_y.max()),
               "final_predicted_mean": float(label(history_x[top]).mean()), "bo_rounds": float(rounds),
               "final_from_search": float((top >= settings.bo_gp_samples).float().mean())}
    return Proposal(designs=space.decode(history_x[top].float()), surrogates=[surrogate], metrics=metrics)


BASELINE = Baseline("bo-qei", Settings, propose, order=6, quick=QUICK)
