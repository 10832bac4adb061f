"""What a baseline receives and returns, and the pieces several baselines share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from ignite_mbo.design_space import DesignSpace, TargetScaler
from ignite_mbo.models import GaussianMLP
from ignite_mbo.regularizers import Regularizer
from ignite_mbo.tasks import Task
from ignite_mbo.training import FitSettings, MetricLogger, train_surrogate


class BaselineSettings(BaseModel):
    """Base for each baseline's hyperparameters; defaults are the full-fidelity published ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_designs: int = 128


@dataclass
class Context:
    """Everything a baseline needs besides the task and its settings."""

    new_regularizer: Callable[[], Regularizer]  # a fresh regularizer per regularized model
    seed: int
    device: torch.device
    log: MetricLogger = lambda metrics, step: None  # noqa: E731

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000 + offset)


@dataclass
class TrainedSurrogate:
    """A regularized model after training, with the space its inputs live in."""

    model: nn.Module
    space: DesignSpace
    regularizer: Regularizer
    history: list[dict[str, float]]


@dataclass
class Proposal:
    """A baseline's answer: raw designs for the oracle, and the regularized models behind them."""

    designs: np.ndarray
    surrogates: list[TrainedSurrogate]
    metrics: dict[str, float] = field(default_factory=dict)
    regularizer_affects_search: bool = True


def train_gaussian_ensemble(
    task: Task, space: DesignSpace, ctx: Context, fit: FitSettings, *,
    num_models: int, hidden_size: int, bootstrap: bool, num_layers: int = 2,
) -> list[TrainedSurrogate]:
    """Train ``num_models`` Gaussian MLPs on the task's z-scored y, each with its own regularizer."""
    features = space.encode(task.x)
    targets = TargetScaler.fit(task.y).transform(task.y)
    surrogates = []
    for member in range(num_models):
        torch.manual_seed(ctx.seed * 1000 + member)
        model = GaussianMLP(int(np.prod(features.shape[1:])), hidden_size, num_layers).to(ctx.device)
        regularizer = ctx.new_regularizer()
        prefix = f"model_{member}/" if num_models > 1 else ""
        history = train_surrogate(model, features, targets, regularizer, fit, generator=ctx.generator(member),
                                  bootstrap=bootstrap, log=ctx.log, prefix=prefix)
        surrogates.append(TrainedSurrogate(model.eval(), space, regularizer, history))
    return surrogates


def top_designs(task: Task, count: int) -> np.ndarray:
    """The ``count`` highest-scoring training designs (best first): the usual starting points."""
    return task.x[np.argsort(-task.y[:, 0], kind="stable")[:count]]


def gradient_ascent(
    score: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, *, steps: int, learning_rate: float,
    log: MetricLogger | None = None,
) -> torch.Tensor:
    """``steps`` plain gradient-ascent steps on ``score`` (per-design scores, shape (n, 1)) from ``start``."""
    x = start.clone()
    for step in range(steps):
        x.requires_grad_(True)
        predicted = score(x)
        (grad,) = torch.autograd.grad(predicted.sum(), x)
        x = (x + learning_rate * grad).detach()
        if log is not None and (step % 10 == 0 or step == steps - 1):
            log({"search/predicted_mean": predicted.mean().item()}, step)
    return x


def solver_learning_rate(base_rate: float, space_shape: tuple[int, ...]) -> float:
    """design-baselines scales the ascent step by √(number of features)."""
    return base_rate * float(np.sqrt(np.prod(space_shape)))
