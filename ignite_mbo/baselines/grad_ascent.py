"""Gradient ascent (GA): fit one Gaussian MLP, then climb its mean prediction from the best designs."""

from __future__ import annotations

from ignite_mbo.baselines.base import (
    BaselineSettings, Context, Proposal, gradient_ascent, solver_learning_rate, top_designs,
    train_gaussian_ensemble,
)
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.tasks import Task
from ignite_mbo.training import FitSettings


class Settings(BaselineSettings):
    hidden_size: int = 2048
    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 3e-4
    validation_size: int = 200
    solver_steps: int = 200
    solver_lr: float = 0.01  # times √(number of features)


QUICK = {"hidden_size": 256, "epochs": 10}


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = DesignSpace.for_task(task)
    fit = FitSettings(settings.epochs, settings.batch_size, settings.learning_rate, settings.validation_size)
    (surrogate,) = train_gaussian_ensemble(task, space, ctx, fit, num_models=1,
                                           hidden_size=settings.hidden_size, bootstrap=False)
    start = space.encode(top_designs(task, settings.num_designs)).to(ctx.device)
    final = gradient_ascent(surrogate.model.predict_mean, start, steps=settings.solver_steps,
                            learning_rate=solver_learning_rate(settings.solver_lr, tuple(start.shape[1:])),
                            log=ctx.log)
    return Proposal(designs=space.decode(final), surrogates=[surrogate])
