"""Conservative Objective Models (COMs): climb a forward model trained to not overestimate.

Reference: Trabucco, Kumar, Geng & Levine, "Conservative Objective Models for Effective Offline
Model-Based Optimization", ICML 2021; design-baselines ``coms_cleaned`` with the TF-Bind-8
settings of its ``scripts/coms-tf-bind-8.sh`` (the version behind the Design-Bench numbers).

The forward model f (a ReLU MLP with one output) minimises, per minibatch,

    MSE(f(x), y) + α · (mean f(x⁻) − mean f(x))

where x⁻ are adversarial designs found by ``particle_train_gradient_steps`` gradient-ascent
steps on f from the batch designs. α = exp(log α) follows dual ascent on the Lagrangian
α·(τ − gap), with its own Adam optimizer, so α grows while the overestimation gap exceeds τ.
The search then takes ``particle_evaluate_gradient_steps`` ascent steps on f from the 128 best
training designs. Discrete tasks live in Design-Bench's logit space, unnormalised (as the
reference's ``--no-normalize-xs``); continuous ones are z-scored; scores are z-scored.

Regularized model: the conservative forward model. The IGNITE regularizer replaces
``backward`` of the conservative loss above (training goes through ``train_surrogate`` with a
loss closure that carries α); G is the mean prediction of f on the clean batch.

Deliberate deviations: PyTorch's default layer initialisation (the reference uses Keras'
Glorot), as every surrogate in this project; α's Adam uses PyTorch's defaults except ε=1e-7
(Keras' value).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ignite_mbo.baselines.base import (
    BaselineSettings, Context, Proposal, TrainedSurrogate, gradient_ascent, solver_learning_rate, top_designs,
)
from ignite_mbo.design_space import DesignSpace, TargetScaler
from ignite_mbo.tasks import Task
from ignite_mbo.training import FitSettings, train_surrogate


class Settings(BaselineSettings):
    hidden_size: int = 2048
    epochs: int = 50
    batch_size: int = 128
    learning_rate: float = 3e-4
    validation_size: int = 500
    initial_alpha: float = 0.1
    alpha_lr: float = 0.01
    overestimation_limit: float = 2.0  # τ, the target overestimation gap
    particle_lr: float = 2.0  # times √(number of features)
    particle_train_gradient_steps: int = 50
    particle_evaluate_gradient_steps: int = 50


QUICK = {"hidden_size": 64, "epochs": 1, "batch_size": 256, "particle_train_gradient_steps": 5}


class ForwardModel(nn.Module):
    """COMs' forward model: a flattened MLP with ReLU hidden layers and one (non-Gaussian) output."""

    def __init__(self, input_size: int, hidden_size: int = 2048, num_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_size
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_size), nn.ReLU()]
            width = hidden_size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, *design_shape) -> predicted score (batch, 1)."""
        return self.net(x)

    def predict_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


class ConservativeLoss:
    """The COMs objective as a ``train_surrogate`` loss, with α's dual ascent inside.

    Called in train mode it takes one α step per batch (from the gap the model loss just used,
    as the reference does) and accumulates training statistics; in eval mode (the validation
    pass) it only records them. ``epoch_metrics`` returns and resets the epoch's statistics.
    """

    def __init__(self, *, initial_alpha: float, alpha_lr: float, overestimation_limit: float,
                 particle_lr: float, particle_steps: int) -> None:
        self.log_alpha = torch.tensor(math.log(initial_alpha), requires_grad=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=alpha_lr, eps=1e-7)
        self.overestimation_limit = overestimation_limit
        self.particle_lr = particle_lr
        self.particle_steps = particle_steps
        self._stats: dict[str, list[float]] = {}

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def adversarial_designs(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """x⁻: gradient ascent on the model's prediction from x (detached)."""
        with torch.enable_grad():
            return gradient_ascent(model, x, steps=self.particle_steps, learning_rate=self.particle_lr)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        prediction = model(x)
        mse = ((prediction - y) ** 2).mean()
        gap = (model(self.adversarial_designs(model, x)) - prediction).mean()
        alpha = self.alpha
        split = "train" if model.training else "val"
        if model.training:
            self._dual_step(float(gap.detach()))
        for name, value in (("mse", mse.item()), ("overestimation", gap.item())):
            self._stats.setdefault(f"{split}_{name}", []).append(value)
        return mse + alpha * gap

    def _dual_step(self, gap: float) -> None:
        """One Adam step on log α for the Lagrangian α·(τ − gap): ∂/∂log α = α·(τ − gap)."""
        self.alpha_optimizer.zero_grad(set_to_none=True)
        self.log_alpha.grad = (self.log_alpha.detach().exp() * (self.overestimation_limit - gap)).reshape(())
        self.alpha_optimizer.step()

    def epoch_metrics(self) -> dict[str, float]:
        metrics = {name: float(np.mean(values)) for name, values in self._stats.items()}
        metrics["alpha"] = self.alpha
        self._stats = {}
        return metrics


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = DesignSpace.for_task(task)
    features = space.encode(task.x)
    targets = TargetScaler.fit(task.y).transform(task.y)
    particle_lr = solver_learning_rate(settings.particle_lr, tuple(features.shape[1:]))

    torch.manual_seed(ctx.seed * 1000)
    model = ForwardModel(int(np.prod(features.shape[1:])), settings.hidden_size).to(ctx.device)
    conservative = ConservativeLoss(
        initial_alpha=settings.initial_alpha, alpha_lr=settings.alpha_lr,
        overestimation_limit=settings.overestimation_limit, particle_lr=particle_lr,
        particle_steps=settings.particle_train_gradient_steps,
    )
    coms_history: list[dict[str, float]] = []

    def log_epoch(metrics: dict[str, float], epoch: int) -> None:
        """Add the epoch's α, overestimation gap and MSE to what train_surrogate logs."""
        coms_history.append(conservative.epoch_metrics())
        ctx.log({**metrics, **{f"coms/{key}": value for key, value in coms_history[-1].items()}}, epoch)

    regularizer = ctx.new_regularizer()
    fit = FitSettings(settings.epochs, settings.batch_size, settings.learning_rate, settings.validation_size)
    history = train_surrogate(model, features, targets, regularizer, fit, generator=ctx.generator(0),
                              loss_fn=conservative, log=log_epoch)
    for epoch_metrics, coms_metrics in zip(history, coms_history, strict=True):
        epoch_metrics.update({f"coms/{key}": value for key, value in coms_metrics.items()})
    model.eval()

    start = space.encode(top_designs(task, settings.num_designs)).to(ctx.device)
    final = gradient_ascent(model, start, steps=settings.particle_evaluate_gradient_steps,
                            learning_rate=particle_lr, log=ctx.log)
    last = coms_history[-1] if coms_history else {}
    metrics = {"final_alpha": conservative.alpha,
               "final_overestimation": last.get("train_overestimation", float("nan")),
               "final_train_mse": last.get("train_mse", float("nan"))}
    return Proposal(designs=space.decode(final), surrogates=[TrainedSurrogate(model, space, regularizer, history)],
                    metrics=metrics)

