"""RoMA: Robust Model Adaptation: pre-train a smooth forward model, then adapt it at every search step.

Reference: Yu, Ahn, Song & Shin, "RoMA: Robust Model Adaptation for Offline Model-based
Optimization", NeurIPS 2021; ``sihyun-yu/RoMA``, package ``design_baselines/safeweight``
(``__init__.py``, ``trainers.py``, ``nets.py``, ``experiments.py``).

Pre-training. The forward model is a 2×64 softplus Gaussian MLP (``DoubleheadModel``, soft-clipped
log std). Each minibatch's designs get Gaussian input noise (σ 0.2); ``perturbation_steps``
normalised-gradient steps then push a copy of the weights *up* the NLL (each tensor's step scaled
to that tensor's norm, ``perturbation_radius / perturbation_steps`` per step), and the model
descends the NLL *at the perturbed weights* (Adam 1e-3, each gradient clipped to norm 1).

Search. From the 128 best designs, ``updates`` times: copy the pre-trained weights and adapt the
copy by ``adaptation_steps`` normalised steps that shrink the designs' input-gradient norm plus
α·NLL of the current pseudo-labels; take one Adam step on the designs up the adapted mean minus
(adapted mean − pre-trained mean at the start)² / (2·region); the new pseudo-labels are the adapted
model's means. The std terms carry ``coef_stddev = 0`` in every published script and are left out.

TF-Bind (the reference runs only continuous tasks through this package): designs are
Design-Bench logits z-scored per feature (design-baselines' ``normalize_xs``, as GA), the noise
and the search act on those features, designs are decoded by argmax. Settings are the D'Kitty
script's. docs/fidelity.md lists every choice.

Regularized model: the pre-trained forward model, through ``Context.fit`` with :class:`RobustLoss`;
G is its mean prediction on the clean batch at the unperturbed weights. The per-step adaptation
starts from that model and is not itself regularized.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.func import functional_call

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
)
from ignite_mbo.design_space import DesignSpace, TargetScaler
from ignite_mbo.models import GaussianEnsemble, gaussian_nll
from ignite_mbo.tasks import Task
from ignite_mbo.training import KERAS_ADAM_EPSILON, FitSettings, draw_splits

FIXED = ("max_logstd", "min_logstd")
"""Parameters the weight perturbations leave alone (the reference skips tensors of leading size 1)."""


class Settings(BaselineSettings):
    hidden_size: Size = Field(64, description="units of each hidden layer of the forward model")
    epochs: Count = Field(50, description="pre-training epochs of the forward model (warmup_epochs)")
    batch_size: Size = Field(128, description="minibatch size of the pre-training")
    learning_rate: Rate = Field(1e-3, description="Adam learning rate of the pre-training")
    validation_size: ValidationSize = Field(200, description="rows held out to validate the forward model")
    clip_norm: Rate = Field(1.0, description="each pre-training gradient is clipped to this norm")
    input_noise: Scale = Field(0.2, description="std of the Gaussian noise on the designs (continuous_noise_std)")
    perturbation_steps: Count = Field(20, description="steps of each weight perturbation up the NLL "
                                                      "(steps_per_update)")
    perturbation_radius: Rate = Field(5e-3, description="each weight perturbation totals this times ‖w‖ (inner_lr)")
    updates: Count = Field(500, description="search steps, each adapting a fresh copy of the model")
    adaptation_steps: Count = Field(100, description="adaptation steps of the model copy per search step "
                                                     "(5 · steps_per_update)")
    solution_lr: Rate = Field(3e-3, description="Adam learning rate of the designs")
    region: Rate = Field(4.0, description="trust region of the adapted mean's change")
    alpha: Scale = Field(1.0, description="weight of the pseudo-label NLL in the adaptation")


QUICK = {"epochs": 5, "perturbation_steps": 2, "adaptation_steps": 10}
"""Quick fidelity: a tenth of the epochs and of both inner loops (same total perturbation radius);
the model (already 64 wide) and the 500 search updates are unchanged."""

Params = dict[str, torch.Tensor]


class _Distribution(nn.Module):
    """``model.distribution`` as a forward, so that ``functional_call`` can run it at other weights."""

    def __init__(self, model: GaussianEnsemble) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.distribution(x)


class Shifted:
    """``model`` with ``shift`` added to its weights (a differentiable view: nothing is written)."""

    def __init__(self, model: GaussianEnsemble, shift: Params) -> None:
        self.wrapper, self.shift = _Distribution(model), shift

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = {f"model.{name}": p + self.shift[name] for name, p in self.wrapper.model.named_parameters()
                   if name in self.shift}
        return functional_call(self.wrapper, weights, (x,), strict=False)


def perturbable(model: nn.Module) -> Params:
    return {name: p for name, p in model.named_parameters() if name not in FIXED}


def normalised_step(grads: Params, reference: Params, size: float) -> Params:
    """Each tensor's gradient rescaled (per member) to ``size`` times the norm of its reference weight."""
    steps = {}
    for name, grad in grads.items():
        shape = (-1, *([1] * (grad.dim() - 1)))
        scale = reference[name].detach().flatten(1).norm(dim=1) / (grad.flatten(1).norm(dim=1) + 1e-6)
        steps[name] = size * scale.view(shape) * grad
    return steps


class RobustLoss:
    """RoMA's pre-training objective as a ``Context.fit`` loss: the NLL of the noisy batch at
    adversarially perturbed weights (train mode), or at the model's own weights (validation)."""

    def __init__(self, *, noise: float, steps: int, radius: float, generator: torch.Generator) -> None:
        self.noise, self.steps, self.radius, self.generator = noise, steps, radius, generator

    def perturbation(self, model: GaussianEnsemble, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> Params:
        """``steps`` normalised steps up the NLL from the current weights; returns the total shift."""
        base = perturbable(model)
        shift = {name: torch.zeros_like(p) for name, p in base.items()}
        with torch.enable_grad():
            for _ in range(self.steps):
                leaves = {name: s.requires_grad_(True) for name, s in shift.items()}
                nll, _ = gaussian_nll(Shifted(model, leaves), x, y, weights)
                grads = dict(zip(leaves, torch.autograd.grad(nll.sum(), list(leaves.values())), strict=True))
                step = normalised_step(grads, base, self.radius / self.steps)
                shift = {name: (leaves[name] + step[name]).detach() for name in leaves}
        return shift

    def __call__(self, model: GaussianEnsemble, x: torch.Tensor, y: torch.Tensor,
                 weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        noisy = x + self.noise * torch.randn(x.shape, generator=self.generator).to(x.device)
        if not model.training:
            return gaussian_nll(model, noisy, y, weights)[0], None
        shift = self.perturbation(model, noisy, y, weights)
        loss, _ = gaussian_nll(Shifted(model, shift), noisy, y, weights)
        return loss, None  # G: the regularizer's clean-batch forward at the unperturbed weights

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def adapt(model: GaussianEnsemble, x: torch.Tensor, labels: torch.Tensor, settings: Settings) -> Params:
    """The per-step adaptation: a shift of the pre-trained weights that lowers the designs' mean
    input-gradient norm + α·NLL of ``labels`` at ``x`` (normalised steps, as the pre-training's)."""
    base = perturbable(model)
    shift = {name: torch.zeros_like(p) for name, p in base.items()}
    size = settings.perturbation_radius / settings.adaptation_steps
    ones = torch.ones(labels.shape[:2], device=x.device)
    for _ in range(settings.adaptation_steps):
        leaves = {name: s.requires_grad_(True) for name, s in shift.items()}
        designs = x.detach().requires_grad_(True)
        shifted = Shifted(model, leaves)
        mean, _ = shifted.distribution(designs)
        (grad_x,) = torch.autograd.grad(mean.sum(), designs, create_graph=True)
        nll, _ = gaussian_nll(shifted, designs, labels, ones)
        objective = grad_x.flatten(1).norm(dim=1).mean() + settings.alpha * nll.sum()
        grads = dict(zip(leaves, torch.autograd.grad(objective, list(leaves.values())), strict=True))
        step = normalised_step(grads, base, size)
        shift = {name: (leaves[name] - step[name]).detach() for name in leaves}
    return shift


def search(model: GaussianEnsemble, start: torch.Tensor, labels: torch.Tensor, settings: Settings,
           ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """RoMA's solution updates; returns the final designs and the adapted model's means there."""
    x = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=settings.solution_lr, eps=KERAS_ADAM_EPSILON)
    with torch.no_grad():
        anchor = model.predict_mean(start)
    ctx.progress.phase("search updates", settings.updates)
    for update in range(settings.updates):
        adapted = Shifted(model, adapt(model, x, labels, settings))
        mean, _ = adapted.distribution(x)
        objective = (-mean + (mean - anchor) ** 2 / (2 * settings.region)).sum()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        with torch.no_grad():
            labels = adapted.distribution(x)[0]
        if update % 10 == 0 or update == settings.updates - 1:
            ctx.log({"search/predicted_mean": float(labels.mean())}, update)
        ctx.progress.advance()
    return x.detach(), labels


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = DesignSpace.for_task(task, normalize=True)
    scaler = TargetScaler.fit(task.y)
    x, y = space.encode(task.x), scaler.transform(task.y)
    model = GaussianEnsemble(space.num_features, settings.hidden_size, 2, activation="softplus",
                             generators=ctx.generators("roma/init", 1))
    loss = RobustLoss(noise=settings.input_noise, steps=settings.perturbation_steps,
                      radius=settings.perturbation_radius, generator=ctx.streams.torch("roma/noise"))
    fit = FitSettings(settings.epochs, settings.batch_size, settings.learning_rate, settings.validation_size,
                      clip_norm=settings.clip_norm)
    splits = draw_splits(len(x), 1, settings.validation_size, ctx.streams, "roma", bootstrap=False, shared=True)
    surrogate = ctx.fit("roma", model, space, x, y, fit, splits, loss=loss)

    best = np.argsort(-task.y[:, 0], kind="stable")[:settings.num_designs]  # as top_designs
    start = space.encode(task.x[best]).to(ctx.device)
    labels = scaler.transform(task.y[best]).to(ctx.device)[None]  # (1, designs, 1): the first pseudo-labels
    final, predicted = search(model, start, labels, settings, ctx)
    metrics = {"final_predicted_mean": float(predicted.mean()),
               "travelled": float((final - start).norm(dim=1).mean())}
    return Proposal(designs=space.decode(final), surrogates=[surrogate], metrics=metrics)


BASELINE = Baseline("roma", Settings, propose, order=10, quick=QUICK)
