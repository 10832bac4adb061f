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

from ignite_mbo.baselines.base import BaselineSettings, Context, Count, Layers, Rate, Size, TrainedSurrogate, ValidationSize
from ignite_mbo.design_space import DesignSpace, TargetScaler, TokenSpace
from ignite_mbo.models import GaussianEnsemble
from ignite_mbo.tasks import Task
from ignite_mbo.training import FitSettings, draw_splits

Score = Callable[[torch.Tensor], torch.Tensor]
"""Surrogate inputs (n, ...) -> one score per design, (n, 1)."""


class EnsembleSettings(BaselineSettings):
    """The forward-model ensemble's settings (design-baselines' TF-Bind configs)."""

    num_models: Count = 5
    hidden_size: Size = 256
    num_layers: Layers = 1
    embedding_size: Size = 256  # token embedding of discrete designs (REINFORCE, CbAS)
    epochs: Count = 100
    batch_size: Size = 100
    learning_rate: Rate = 1e-3
    validation_size: ValidationSize = 200


ENSEMBLE_QUICK = {"hidden_size": 64, "embedding_size": 32, "epochs": 10}
"""Quick fidelity for the ensemble: a quarter of the width, an eighth of the embedding, a tenth of the epochs."""


def token_space(task: Task) -> DesignSpace:
    """Integer tokens for discrete tasks (embedded by the surrogates), z-scored x for continuous ones."""
    if task.is_discrete:
        return TokenSpace(task.design_shape, task.num_classes)
    return DesignSpace.for_task(task, normalize=True)


def train_ensemble(task: Task, space: DesignSpace, ctx: Context, settings: EnsembleSettings) -> TrainedSurrogate:
    """Fit the bootstrap ensemble on ``space``'s encoding of the task (one shared data pipeline)."""
    x, y = space.encode(task.x), TargetScaler.fit(task.y).transform(task.y)
    embedding = (int(task.num_classes or 0), settings.embedding_size) if isinstance(space, TokenSpace) else None
    model = GaussianEnsemble(space.num_features, settings.hidden_size, settings.num_layers, embedding=embedding,
                             generators=ctx.generators("ensemble/init", settings.num_models))
    fit = FitSettings(settings.epochs, settings.batch_size, settings.learning_rate, settings.validation_size)
    splits = draw_splits(len(x), settings.num_models, settings.validation_size, ctx.streams, "ensemble",
                         bootstrap=True, shared=True)
    return ctx.fit("ensemble", model, space, x, y, fit, splits)


def ensemble_mean(surrogate: TrainedSurrogate) -> Score:
    """Inputs -> the members' average mean prediction (the mixture's mean), (n, 1)."""
    return lambda x: surrogate.model.predict_mean(x).mean(dim=0)
