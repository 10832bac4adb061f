"""Bootstrap ensembles of Gaussian MLPs, shared by ens-mean, ens-min, reinforce, cma-es, cbas and bo-qei.

Two families:

* the *small* ensemble of design-baselines' reinforce / cbas / cma-es forward models: 5 bootstrap
  members, one hidden layer of 256 LeakyReLU units, Adam at 1e-3, batch 100, 100 epochs, 200
  validation rows (``SmallEnsembleSettings``, ``train_small_ensemble``);
* gradient ascent on an ensemble of grad-ascent's 2×2048 surrogates, aggregated by mean or min
  (``AscentSettings``, ``propose_ensemble_ascent``), used by ens-mean and ens-min.

Every member is a regularized model with its own regularizer (``ctx.new_regularizer()`` per member).
The reference's reinforce/cbas forward model embeds integer tokens (embedding size 256); here every
member reads the shared ``DesignSpace`` features (Design-Bench logits or z-scored x), so all
baselines' surrogates live in one space and their sharpness is measured alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from ignite_mbo.baselines.base import (
    BaselineSettings, Context, Proposal, TrainedSurrogate, gradient_ascent, solver_learning_rate, top_designs,
    train_gaussian_ensemble,
)
from ignite_mbo.baselines.grad_ascent import Settings as GradAscentSettings
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.tasks import Task
from ignite_mbo.training import FitSettings

Score = Callable[[torch.Tensor], torch.Tensor]
"""Features (n, *shape) -> one score per design, (n, 1)."""


class SmallEnsembleSettings(BaselineSettings):
    """The forward-model ensemble of design-baselines' reinforce / cbas / cma-es (TF-Bind-8 settings)."""

    num_models: int = 5
    hidden_size: int = 256
    num_layers: int = 1
    epochs: int = 100
    batch_size: int = 100
    learning_rate: float = 1e-3
    validation_size: int = 200


SMALL_ENSEMBLE_QUICK = {"hidden_size": 32, "epochs": 1, "batch_size": 512}
"""QUICK overrides of the ensemble fields, for baselines built on ``SmallEnsembleSettings``."""


def train_small_ensemble(task: Task, space: DesignSpace, ctx: Context,
                         settings: SmallEnsembleSettings) -> list[TrainedSurrogate]:
    """Train ``settings.num_models`` small Gaussian MLPs, each on a bootstrap resample with its own regularizer."""
    fit = FitSettings(settings.epochs, settings.batch_size, settings.learning_rate, settings.validation_size)
    return train_gaussian_ensemble(task, space, ctx, fit, num_models=settings.num_models,
                                   hidden_size=settings.hidden_size, num_layers=settings.num_layers,
                                   bootstrap=True)


def member_predictions(surrogates: list[TrainedSurrogate]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Features (n, *shape) -> each member's mean prediction, (n, num_models)."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([s.model.predict_mean(x) for s in surrogates], dim=1)
    return predict


def ensemble_mean(surrogates: list[TrainedSurrogate]) -> Score:
    """Features -> the members' average mean prediction, (n, 1): the ensemble's predictive mean."""
    predict = member_predictions(surrogates)
    return lambda x: predict(x).mean(dim=1, keepdim=True)


# --- ens-mean / ens-min: gradient ascent on an aggregated ensemble of grad-ascent surrogates ---------------

Aggregate = Callable[[torch.Tensor], torch.Tensor]
"""Member predictions (n, num_models) -> one score per design, (n, 1)."""


def mean_of_members(predictions: torch.Tensor) -> torch.Tensor:
    return predictions.mean(dim=1, keepdim=True)


def min_of_members(predictions: torch.Tensor) -> torch.Tensor:
    return predictions.min(dim=1, keepdim=True).values


class AscentSettings(GradAscentSettings):
    """grad-ascent's surrogate and solver settings, for each of ``num_models`` bootstrap members."""

    num_models: int = 5


ASCENT_QUICK = {"hidden_size": 64, "epochs": 2, "batch_size": 512}


def propose_ensemble_ascent(task: Task, settings: AscentSettings, ctx: Context, aggregate: Aggregate) -> Proposal:
    """Train the bootstrap ensemble, then climb ``aggregate`` of its predictions from the best designs.

    Logs ``search/disagreement`` (the std of the members' predictions, averaged over designs) every step.
    """
    space = DesignSpace.for_task(task)
    fit = FitSettings(settings.epochs, settings.batch_size, settings.learning_rate, settings.validation_size)
    surrogates = train_gaussian_ensemble(task, space, ctx, fit, num_models=settings.num_models,
                                         hidden_size=settings.hidden_size, bootstrap=True)
    predict = member_predictions(surrogates)
    steps = itertools.count()

    def score(x: torch.Tensor) -> torch.Tensor:
        predictions = predict(x)
        ctx.log({"search/disagreement": float(predictions.detach().std(dim=1).mean())}, next(steps))
        return aggregate(predictions)

    start = space.encode(top_designs(task, settings.num_designs)).to(ctx.device)
    final = gradient_ascent(score, start, steps=settings.solver_steps,
                            learning_rate=solver_learning_rate(settings.solver_lr, tuple(start.shape[1:])),
                            log=ctx.log)
    with torch.no_grad():
        final_predictions = predict(final)
    metrics = {
        "final_disagreement": float(final_predictions.std(dim=1).mean()),
        "final_predicted_score": float(aggregate(final_predictions).mean()),
    }
    return Proposal(designs=space.decode(final), surrogates=surrogates, metrics=metrics)
