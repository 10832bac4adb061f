"""The bootstrap forward-model ensemble of design-baselines' REINFORCE, CbAS, BO-qEI and CMA-ES.

Five Gaussian MLPs (one hidden layer of 256 LeakyReLU units) trained together on one shuffle of the
data (one ``build_pipeline(bootstraps=5)``: a shared validation split and minibatch order, each
member weighting the rows by its own bootstrap counts), Adam at 1e-3, batch 100, 100 epochs. Every
member is a regularized model with its own λ. REINFORCE and CbAS read integer tokens through a
per-member ``Embedding(4, 256)`` on discrete tasks; BO-qEI and CMA-ES read z-scored logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field

from ignite_mbo.baselines.base import BaselineSettings, Context, Count, Layers, Rate, Size, TrainedSurrogate, ValidationSize
from ignite_mbo.design_space import DesignSpace, TokenSpace
from ignite_mbo.tasks import Task
from ignite_mbo.training import FitSettings

Score = Callable[[torch.Tensor], torch.Tensor]
"""Surrogate inputs (n, ...) -> one score per design, (n, 1)."""


class EnsembleSettings(BaselineSettings):
    """The forward-model ensemble's settings (design-baselines' TF-Bind configs)."""

    num_models: Count = Field(5, description="Gaussian MLPs in the bootstrap ensemble, each with its own λ")
    hidden_size: Size = Field(256, description="units of each hidden layer of an ensemble member")
    num_layers: Layers = Field(1, description="hidden layers of an ensemble member")
    embedding_size: Size = Field(256, description="token embedding width of discrete designs (REINFORCE, CbAS)")
    epochs: Count = Field(100, description="training epochs of the ensemble")
    batch_size: Size = Field(100, description="minibatch size of the ensemble's training")
    learning_rate: Rate = Field(1e-3, description="Adam learning rate of the ensemble")
    validation_size: ValidationSize = Field(200, description="rows held out to validate the ensemble")


ENSEMBLE_QUICK = {"hidden_size": 64, "embedding_size": 32, "epochs": 10}
"""Quick fidelity for the ensemble: a quarter of the width, an eighth of the embedding, a tenth of the epochs."""


def token_space(task: Task) -> DesignSpace:
    """Integer tokens for discrete tasks (embedded by the surrogates), z-scored x for continuous ones."""
    if task.is_discrete:
        return TokenSpace(task.design_shape, task.num_classes)
    return DesignSpace.for_task(task, normalize=True)


def train_ensemble(task: Task, space: DesignSpace, ctx: Context, settings: EnsembleSettings) -> TrainedSurrogate:
    """Fit the bootstrap ensemble on ``space``'s encoding of the task (one shared data pipeline)."""
    fit = FitSettings(settings.epochs, settings.batch_size, settings.learning_rate, settings.validation_size)
    return ctx.fit_gaussian_ensemble("ensemble", task, space, fit, num_members=settings.num_models,
                                     hidden_size=settings.hidden_size, num_layers=settings.num_layers,
                                     shared_data=True, embedding_size=settings.embedding_size)


def ensemble_mean(surrogate: TrainedSurrogate) -> Score:
    """Inputs -> the members' average mean prediction (the mixture's mean), (n, 1)."""
    return lambda x: surrogate.model.predict_mean(x).mean(dim=0)
