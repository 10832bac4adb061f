"""Gradient ascent (GA): fit Gaussian MLP surrogate(s), then climb their prediction from the best designs.

Reference: design-baselines ``gradient_ascent`` as the IGNITE code runs it
(``gradient_ascent_IGNITE/__init__.py``, TF-Bind configs in ``experiments.py``). Designs become
logits, z-scored with the training set's statistics (``normalize_xs``), scores are z-scored; each
of ``num_models`` surrogates (one for GA, five for ens-mean / ens-min) is a 2×2048 LeakyReLU
Gaussian MLP trained on its own shuffle of the data with bootstrap counts as loss weights; the
search takes 200 steps of size 0.01·√features up the aggregated mean prediction from the 128 best
training designs. docs/fidelity.md lists every known difference from the reference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field

from ignite_mbo.baselines.base import (
    Baseline,
    BaselineSettings,
    Context,
    Count,
    Layers,
    Proposal,
    Rate,
    Size,
    ValidationSize,
    gradient_ascent,
    solver_learning_rate,
    top_designs,
)
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.tasks import Task
from ignite_mbo.training import FitSettings

Aggregate = Callable[[torch.Tensor], torch.Tensor]
"""Member predictions (members, n, 1) -> one score per design, (n, 1)."""


def min_of_members(predictions: torch.Tensor) -> torch.Tensor:
    return predictions.min(dim=0).values


def mean_of_members(predictions: torch.Tensor) -> torch.Tensor:
    return predictions.mean(dim=0)


class Settings(BaselineSettings):
    num_models: Count = Field(1, description="surrogates, each on its own shuffle and bootstrap of the data")
    hidden_size: Size = Field(2048, description="units of each hidden layer of a surrogate")
    num_layers: Layers = Field(2, description="hidden layers of a surrogate")
    epochs: Count = Field(100, description="training epochs of the surrogates")
    batch_size: Size = Field(128, description="minibatch size of the surrogates' training")
    learning_rate: Rate = Field(3e-4, description="Adam learning rate of the surrogates")
    validation_size: ValidationSize = Field(200, description="rows held out to validate each surrogate")
    solver_steps: Count = Field(200, description="gradient-ascent steps of the search")
    solver_lr: Rate = Field(0.01, description="ascent step size, times √(number of features)")


QUICK = {"hidden_size": 256, "epochs": 10}
"""Quick fidelity: an eighth of the width, a tenth of the epochs; the search is unchanged."""


def propose(task: Task, settings: Settings, ctx: Context, aggregate: Aggregate = min_of_members) -> Proposal:
    """Train the surrogates, then ascend ``aggregate`` of their mean predictions (the reference's
    aggregation is a min, also for its "mean" ensemble; with one model it is that model)."""
    space = DesignSpace.for_task(task, normalize=True)
    fit = FitSettings(settings.epochs, settings.batch_size, settings.learning_rate, settings.validation_size)
    surrogate = ctx.fit_gaussian_ensemble("surrogate", task, space, fit, num_members=settings.num_models,
                                          hidden_size=settings.hidden_size, num_layers=settings.num_layers,
                                          shared_data=False)
    model = surrogate.model

    def score(x: torch.Tensor) -> torch.Tensor:
        return aggregate(model.predict_mean(x))

    start = space.encode(top_designs(task, settings.num_designs)).to(ctx.device)
    final = gradient_ascent(score, start, steps=settings.solver_steps, log=ctx.log, progress=ctx.progress,
                            learning_rate=solver_learning_rate(settings.solver_lr, space.num_features))
    with torch.no_grad():
        predictions = model.predict_mean(final)
    metrics = {"final_predicted_score": float(aggregate(predictions).mean()),
               "final_disagreement": float(predictions.std(dim=0).mean()) if settings.num_models > 1 else 0.0}
    return Proposal(designs=space.decode(final), surrogates=[surrogate], metrics=metrics)


BASELINE = Baseline("grad-ascent", Settings, propose, order=1, quick=QUICK)
