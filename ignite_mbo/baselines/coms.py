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
training designs. Designs are Design-Bench's logits for discrete tasks, unnormalised (the scripts'
``--no-normalize-xs``); scores are z-scored.

Regularized model: the conservative forward model. Its training goes through ``Context.fit`` with
the conservative loss (which carries α) in place of the Gaussian NLL; G is the mean prediction of
f on the clean batch, from the loss's own forward pass. The IGNITE scripts train it for 2 epochs
(``--forward-model-epochs 2``, baseline and IGNITE alike), not design-baselines' 50.
docs/fidelity.md lists every known difference from the reference.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field

from ignite_mbo.baselines.base import (
    Baseline,
    BaselineSettings,
    Context,
    Count,
    Proposal,
    Rate,
    Scale,
    Size,
    ValidationSize,
    gradient_ascent,
    solver_learning_rate,
    top_designs,
)
from ignite_mbo.design_space import DesignSpace, TargetScaler
from ignite_mbo.models import StackedMLP
from ignite_mbo.tasks import Task
from ignite_mbo.training import KERAS_ADAM_EPSILON, FitSettings, draw_splits


class Settings(BaselineSettings):
    hidden_size: Size = Field(2048, description="units of each hidden layer of the conservative model")
    epochs: Count = Field(2, description="training epochs of the conservative model")
    batch_size: Size = Field(128, description="minibatch size of the conservative model")
    learning_rate: Rate = Field(3e-4, description="Adam learning rate of the conservative model")
    validation_size: ValidationSize = Field(500, description="rows held out to validate the model")
    initial_alpha: Rate = Field(0.1, description="initial weight α of the conservative term")
    alpha_lr: Rate = Field(0.01, description="Adam learning rate of α's dual ascent")
    overestimation_limit: Scale = Field(2.0, description="τ, the target overestimation gap")
    particle_lr: Rate = Field(2.0, description="ascent step of the designs, times √(number of features)")
    particle_train_gradient_steps: Count = Field(50, description="ascent steps that make the adversarial "
                                                                 "designs in training")
    particle_evaluate_gradient_steps: Count = Field(50, description="ascent steps of the search from the "
                                                                    "best designs")


QUICK = {"hidden_size": 256, "particle_train_gradient_steps": 5, "particle_evaluate_gradient_steps": 50}
"""Quick fidelity: an eighth of the width, a tenth of the inner ascent; 2 epochs as in the paper."""


class ConservativeLoss:
    """The COMs objective as a ``Context.fit`` loss, with α's dual ascent inside.

    Called in train mode it takes one α step per batch (from the gap the model loss just used, as
    the reference does) and accumulates training statistics on the device; in eval mode (the
    validation pass) it only records them. ``epoch_metrics`` reads and resets the epoch's statistics
(``training.fit`` adds them to each epoch's record).
    """

    def __init__(self, *, initial_alpha: float, alpha_lr: float, overestimation_limit: float,
                 particle_lr: float, particle_steps: int) -> None:
        self.log_alpha = torch.tensor(math.log(initial_alpha), requires_grad=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=alpha_lr, eps=KERAS_ADAM_EPSILON)
        self.overestimation_limit = overestimation_limit
        self.particle_lr = particle_lr
        self.particle_steps = particle_steps
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def adversarial_designs(self, model: StackedMLP, x: torch.Tensor) -> torch.Tensor:
        """x⁻: gradient ascent on the model's prediction from x (detached)."""
        with torch.enable_grad():
            return gradient_ascent(lambda z: model(z)[0], x, steps=self.particle_steps, learning_rate=self.particle_lr)

    def __call__(self, model: StackedMLP, x: torch.Tensor, y: torch.Tensor,
                 weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.log_alpha.device != x.device:
            self.log_alpha.data = self.log_alpha.data.to(x.device)
        prediction = model(x)  # (1, batch, 1)
        mse = ((prediction - y) ** 2).mean(dim=(1, 2))
        gap = (model(self.adversarial_designs(model, x)) - prediction).mean(dim=(1, 2))
        alpha = self.log_alpha.detach().exp()
        split = "train" if model.training else "val"
        if model.training:
            self._dual_step(gap.detach().mean())
        self._add(f"{split}_mse", mse.detach())
        self._add(f"{split}_overestimation", gap.detach())
        return mse + alpha * gap, prediction.mean(dim=(1, 2))

    def _dual_step(self, gap: torch.Tensor) -> None:
        """One Adam step on log α for the Lagrangian α·(τ − gap): ∂/∂log α = α·(τ − gap)."""
        self.alpha_optimizer.zero_grad(set_to_none=True)
        self.log_alpha.grad = (self.log_alpha.detach().exp() * (self.overestimation_limit - gap)).reshape(())
        self.alpha_optimizer.step()

    def _add(self, name: str, value: torch.Tensor) -> None:
        self._sums[name] = self._sums.get(name, 0) + value.mean()
        self._counts[name] = self._counts.get(name, 0) + 1

    def epoch_metrics(self) -> dict[str, float]:
        metrics = {name: float(total) / self._counts[name] for name, total in self._sums.items()}
        metrics["alpha"] = self.alpha
        self._sums, self._counts = {}, {}
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"log_alpha": self.log_alpha.detach().cpu(), "optimizer": self.alpha_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.alpha_optimizer.load_state_dict(state["optimizer"])


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = DesignSpace.for_task(task, normalize=False)  # the scripts pass --no-normalize-xs
    x, y = space.encode(task.x), TargetScaler.fit(task.y).transform(task.y)
    particle_lr = solver_learning_rate(settings.particle_lr, space.num_features)
    model = StackedMLP(space.num_features, settings.hidden_size, 2, 1, activation="relu",
                       generators=ctx.generators("coms/init", 1))
    conservative = ConservativeLoss(
        initial_alpha=settings.initial_alpha, alpha_lr=settings.alpha_lr,
        overestimation_limit=settings.overestimation_limit, particle_lr=particle_lr,
        particle_steps=settings.particle_train_gradient_steps,
    )
    fit = FitSettings(settings.epochs, settings.batch_size, settings.learning_rate, settings.validation_size)
    splits = draw_splits(len(x), 1, settings.validation_size, ctx.streams, "coms", bootstrap=False, shared=True)
    surrogate = ctx.fit("coms", model, space, x, y, fit, splits, loss=conservative)

    start = space.encode(top_designs(task, settings.num_designs)).to(ctx.device)
    final = gradient_ascent(lambda z: model(z)[0], start, steps=settings.particle_evaluate_gradient_steps,
                            learning_rate=particle_lr, log=ctx.log, progress=ctx.progress)
    last = surrogate.history[-1]
    metrics = {"final_alpha": conservative.alpha, "final_overestimation": last["train_overestimation"],
               "final_train_mse": last["train_mse"]}
    return Proposal(designs=space.decode(final), surrogates=[surrogate], metrics=metrics)


BASELINE = Baseline("coms", Settings, propose, order=9, quick=QUICK)
