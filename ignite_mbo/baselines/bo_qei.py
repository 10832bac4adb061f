"""Batch Bayesian optimisation with q-Expected Improvement on an ensemble's predictions (BO-qEI).

Reference: design-baselines ``bo_qei`` with its TF-Bind-8 configuration. A bootstrap ensemble of
five small Gaussian MLPs plays the black box. The history starts from the ``bo_gp_samples`` best
training designs with their (z-scored) dataset scores, in the continuous feature space (logits for
discrete tasks, z-scored x for continuous ones). Each iteration fits a BoTorch ``SingleTaskGP``
(default priors, fixed observation noise ``bo_noise_se``²) to the history, maximises
``qExpectedImprovement`` over a batch of ``bo_batch_size`` points inside the data's bounding box,
labels the batch with the ensemble's mean prediction plus N(0, ``bo_noise_se``²) noise (as the
reference's noisy observations) and appends it. The answer is the ``num_designs`` best points of
the history by label, decoded to raw designs.

Regularized models: the five ensemble members (each with its own regularizer); the GP is not.

Deliberate deviations: the GP reads inputs scaled to the unit cube (BoTorch's ``Normalize`` over the
data bounds; the reference z-scores them, an affine change its lengthscales absorbed) and runs in
float64; each iteration fits the GP afresh instead of warm-starting from the last fit. Plain qEI
is kept (installed BoTorch 0.18 does not deprecate it; its NumericsWarning suggesting qLogEI is
silenced, as is the reference's BadInitialCandidatesWarning).
"""

from __future__ import annotations

import warnings

import torch
from botorch.acquisition.monte_carlo import qExpectedImprovement
from botorch.exceptions import BadInitialCandidatesWarning
from botorch.exceptions.warnings import NumericsWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.optim import optimize_acqf
from botorch.sampling.normal import SobolQMCNormalSampler
from gpytorch.mlls import ExactMarginalLogLikelihood
from pydantic import model_validator

from ignite_mbo.baselines.base import Context, Proposal
from ignite_mbo.baselines.ensemble import (
    SMALL_ENSEMBLE_QUICK, SmallEnsembleSettings, ensemble_mean, train_small_ensemble,
)
from ignite_mbo.design_space import DesignSpace, TargetScaler
from ignite_mbo.tasks import Task


class Settings(SmallEnsembleSettings):
    """design-baselines' bo_qei TF-Bind-8 configuration (the ensemble fields come from ``SmallEnsembleSettings``)."""

    bo_noise_se: float = 0.1
    bo_gp_samples: int = 500
    bo_batch_size: int = 32
    bo_num_restarts: int = 10
    bo_raw_samples: int = 128
    bo_batch_limit: int = 5
    bo_maxiter: int = 200
    bo_iterations: int = 10
    bo_mc_samples: int = 128

    @model_validator(mode="after")
    def _history_holds_the_answer(self) -> Settings:
        if self.bo_gp_samples + self.bo_iterations * self.bo_batch_size < self.num_designs:
            raise ValueError("bo_gp_samples + bo_iterations * bo_batch_size must be at least num_designs")
        return self


QUICK = {**SMALL_ENSEMBLE_QUICK, "batch_size": 500, "bo_gp_samples": 128, "bo_batch_size": 4,
         "bo_num_restarts": 2, "bo_raw_samples": 16, "bo_maxiter": 10, "bo_iterations": 2, "bo_mc_samples": 16}


def fit_gp(x: torch.Tensor, y: torch.Tensor, bounds: torch.Tensor, noise_se: float) -> SingleTaskGP:
    """A GP with BoTorch's default priors and a fixed noise variance, fit by marginal likelihood."""
    gp = SingleTaskGP(x, y, train_Yvar=torch.full_like(y, noise_se**2),
                      input_transform=Normalize(x.shape[-1], bounds=bounds))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = DesignSpace.for_task(task)
    surrogates = train_small_ensemble(task, space, ctx, settings)
    predict = ensemble_mean(surrogates)

    features = space.encode(task.x)
    shape = tuple(features.shape[1:])
    flat = features.reshape(len(features), -1).double()
    bounds = torch.stack([flat.min(dim=0).values, flat.max(dim=0).values])
    targets = TargetScaler.fit(task.y).transform(task.y).double()

    def label(x: torch.Tensor) -> torch.Tensor:
        """The ensemble's mean prediction for flat features, (n, 1), float64."""
        with torch.no_grad():
            return predict(x.float().reshape(len(x), *shape).to(ctx.device)).double().cpu()

    best = torch.argsort(targets[:, 0], descending=True, stable=True)[: settings.bo_gp_samples]
    history_x, history_y = flat[best], targets[best]
    noise = ctx.generator(200)
    acquisition_value = float("nan")
    for iteration in range(settings.bo_iterations):
        torch.manual_seed(ctx.seed * 1000 + 200 + iteration)  # BoTorch's restarts draw from the global RNG
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumericsWarning)
            warnings.simplefilter("ignore", BadInitialCandidatesWarning)
            gp = fit_gp(history_x, history_y, bounds, settings.bo_noise_se)
            sampler = SobolQMCNormalSampler(torch.Size([settings.bo_mc_samples]), seed=ctx.seed * 1000 + iteration)
            acquisition = qExpectedImprovement(gp, best_f=history_y.max(), sampler=sampler)
            candidates, value = optimize_acqf(
                acquisition, bounds=bounds, q=settings.bo_batch_size, num_restarts=settings.bo_num_restarts,
                raw_samples=settings.bo_raw_samples,
                options={"batch_limit": settings.bo_batch_limit, "maxiter": settings.bo_maxiter})
        candidates = candidates.detach()
        observed = label(candidates) + settings.bo_noise_se * torch.randn(len(candidates), 1, generator=noise,
                                                                          dtype=torch.float64)
        history_x, history_y = torch.cat([history_x, candidates]), torch.cat([history_y, observed])
        acquisition_value = float(value)
        ctx.log({"bo/acquisition_value": acquisition_value, "bo/best_label": float(history_y.max()),
                 "bo/best_ensemble_score": float(label(history_x).max())}, iteration)

    top = torch.argsort(history_y[:, 0], descending=True, stable=True)[: settings.num_designs]
    chosen = history_x[top].float().reshape(len(top), *shape)
    metrics = {"final_acquisition_value": acquisition_value, "final_best_label": float(history_y.max()),
               "final_predicted_mean": float(label(history_x[top]).mean()),
               "final_from_search": float((top >= settings.bo_gp_samples).float().mean())}
    return Proposal(designs=space.decode(chosen), surrogates=surrogates, metrics=metrics)
