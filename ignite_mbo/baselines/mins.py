"""Model Inversion Networks (MINs): sample designs from a score-conditioned generator.

Reference: Kumar & Levine, "Model Inversion Networks for Model-Based Optimization", NeurIPS
2020; design-baselines ``mins`` with the TF-Bind-8 settings of its ``experiments.py`` (offline,
no further iterations).

The inverse model is a conditional Wasserstein GAN with gradient penalty: a generator
G(z, y) and a critic D(x, y) (MLPs with LayerNorm and the score's embedding fed to every layer).
Each training sample is reweighted by ``score_weights`` (the reference's histogram reweighting
toward high scores), the critic takes a step on every batch and the generator on every
``critic_frequency``-th one. Discrete designs are one-hot vectors; the generator emits
Gumbel-softmax samples and real designs are softened likewise (``keep``), with a temperature
annealed linearly from ``start_temp`` to ``final_temp`` over the epochs. The 128 designs are
generated conditioned on y* = the best (normalised) training score, at temperature 0.001.

Regularized model: the forward model (a Gaussian MLP trained on the offline data, with the
reference's input noise), where the official IGNITE code puts the regularizer. In offline MINs
with the published settings (``iterations=0``) that model is never used by the search, so the
regularizer CANNOT change MINs' proposals: the forward model is still trained through
``Context.fit`` (logged, its sharpness measured) and the proposal says
``regularizer_affects_search=False``. The GAN's initialisation and noise come from their own
seeds, so none / ignite / ignite2 give identical designs for the same seed.

The GAN trains 200 epochs on TF-Bind-8 and 100 on TF-Bind-10 (``initial_epochs`` of the
reference's configs), on one fixed shuffle of the rows (the reference's ``buffer=1`` pipeline never
reshuffles). docs/fidelity.md lists every known difference from the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import nn

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
    epochs_per_task,
)
from ignite_mbo.design_space import DesignSpace, TargetScaler
from ignite_mbo.models import GaussianEnsemble, gaussian_nll, keras_init
from ignite_mbo.tasks import Task
from ignite_mbo.training import FitSettings, draw_splits, keras_adam

HISTOGRAM_BINS = 20
MAX_WEIGHT = 5.0
SAMPLING_TEMP = 0.001  # Gumbel-softmax temperature when generating the final designs
FORWARD_NOISE_TEMP = 0.001  # ... and when corrupting the forward model's one-hot inputs
KERAS_LAYER_NORM_EPSILON = 1e-3


class Settings(BaselineSettings):
    # forward model (regularized, unused by the search)
    hidden_size: Size = Field(1024, description="units of each hidden layer of the forward model")
    num_layers: Annotated[int, Field(ge=1, le=16)] = Field(1, description="hidden layers of the forward model")
    forward_epochs: Count = Field(100, description="training epochs of the forward model")
    forward_batch_size: Size = Field(128, description="minibatch size of the forward model")
    forward_lr: Rate = Field(1e-3, description="Adam learning rate of the forward model")
    validation_size: ValidationSize = Field(200, description="rows held out to validate the forward model")
    # inverse model: conditional WGAN-GP
    gan_hidden_size: Size = Field(1024, description="units of each hidden layer of the generator and critic")
    latent_size: Size = Field(32, description="noise dimensions of the generator")
    gan_epochs: Count | None = Field(None, description="training epochs of the GAN "
                                                       "(unset: the reference's per-task value)")
    gan_batch_size: Size = Field(128, description="minibatch size of the GAN")
    critic_frequency: Count = Field(10, description="critic steps per generator step")
    penalty_weight: Scale = Field(10.0, description="weight of the WGAN-GP gradient penalty")
    generator_lr: Rate = Field(2e-4, description="Adam learning rate of the generator")
    discriminator_lr: Rate = Field(2e-4, description="Adam learning rate of the critic")
    adam_beta_1: Annotated[float, Field(ge=0, lt=1)] = Field(0.0, description="Adam β₁ of both GAN optimizers")
    adam_beta_2: Annotated[float, Field(ge=0, lt=1)] = Field(0.9, description="Adam β₂ of both GAN optimizers")
    base_temp: Rate = Field(0.1, description="softmax temperature of the score reweighting of the data")
    keep: Annotated[float, Field(gt=0, le=1)] = Field(0.99, description="probability mass the input noise keeps "
                                                                        "on a real design's token")
    start_temp: Rate = Field(5.0, description="Gumbel-softmax temperature of the generator at the first epoch")
    final_temp: Rate = Field(1.0, description="Gumbel-softmax temperature at the last epoch (annealed linearly)")


QUICK = {"hidden_size": 128, "forward_epochs": 10, "gan_hidden_size": 128, "gan_epochs": 20}
"""Quick fidelity: an eighth of the widths, a tenth of the epochs."""


@dataclass(frozen=True)
class OneHotSpace(DesignSpace):
    """Discrete designs as flat one-hot vectors (length · num_classes), the reference's MINs input."""

    @property
    def num_features(self) -> int:
        return int(np.prod(self.design_shape)) * int(self.num_classes or 1)

    def encode(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.eye(self.num_classes or 1, dtype=np.float32)[x].reshape(len(x), -1))

    def decode(self, features: torch.Tensor) -> np.ndarray:
        one_hot = features.detach().reshape(len(features), *self.design_shape, -1)
        return one_hot.argmax(dim=-1).cpu().numpy().astype(np.int32)


def relaxed_one_hot(logits: torch.Tensor, temp: float, generator: torch.Generator) -> torch.Tensor:
    """A Gumbel-softmax (relaxed one-hot categorical) sample over the last axis."""
    uniform = torch.rand(logits.shape, generator=generator, device=generator.device).clamp(1e-10, 1.0).to(logits.device)
    return torch.softmax((logits - torch.log(-torch.log(uniform))) / temp, dim=-1)


def soften(one_hot: torch.Tensor, keep: float, temp: float, generator: torch.Generator) -> torch.Tensor:
    """The reference's discrete input noise: keep ``keep`` of the mass, spread the rest, resample."""
    probs = keep * one_hot + (1.0 - keep) / one_hot.shape[-1]
    return relaxed_one_hot(probs.log(), temp, generator)


def score_weights(y: np.ndarray, base_temp: float) -> np.ndarray:
    """MINs' reweighting: a target distribution over 20 score bins ∝ softmax(bin upper edge / T),
    restricted to occupied bins, divided by each sample's bin frequency and clipped at 5."""
    scores = y[:, 0]
    counts, edges = np.histogram(scores, bins=HISTOGRAM_BINS)
    frequency = counts / counts.sum()
    upper = edges[1:]
    target = np.exp((upper - upper.max()) / base_temp)
    target = target / target.sum() * (frequency / (frequency + 1e-3))
    target = target / (target.sum() + 1e-7)
    bins = np.minimum(np.digitize(scores, upper), HISTOGRAM_BINS - 1)
    weights = np.clip(target[bins] / (frequency[bins] + 1e-7), 0.0, MAX_WEIGHT)
    return weights.astype(np.float32)[:, None]


class _ScoreConditionedMLP(nn.Module):
    """Three LayerNorm + LeakyReLU(0.2) layers then a linear head, the score's embedding
    concatenated to the input of every layer (the reference's generator and critic body)."""

    def __init__(self, input_size: int, output_size: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Linear(1, hidden)
        self.layers = nn.ModuleList([nn.Linear(input_size + hidden, hidden)]
                                    + [nn.Linear(2 * hidden, hidden) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(hidden, eps=KERAS_LAYER_NORM_EPSILON) for _ in range(3)])
        self.head = nn.Linear(2 * hidden, output_size)
        self.activation = nn.LeakyReLU(0.2)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y_embed = self.embed(y)
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = self.activation(norm(layer(torch.cat([h, y_embed], dim=1))))
        return self.head(torch.cat([h, y_embed], dim=1))


class Generator(nn.Module):
    """G(z, y): designs conditioned on a score; relaxed one-hot samples for discrete designs."""

    def __init__(self, design_shape: tuple[int, ...], latent_size: int, hidden: int, discrete: bool) -> None:
        super().__init__()
        self.design_shape = design_shape
        self.latent_size = latent_size
        self.discrete = discrete
        self.body = _ScoreConditionedMLP(latent_size, int(np.prod(design_shape)), hidden)

    def sample(self, y: torch.Tensor, temp: float, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn((len(y), self.latent_size), generator=generator, device=generator.device).to(y.device)
        out = self.body(z, y).reshape(len(y), *self.design_shape)
        return relaxed_one_hot(torch.log_softmax(out, dim=-1), temp, generator) if self.discrete else out


class Critic(nn.Module):
    """D(x, y): the Wasserstein critic, real designs scoring high."""

    def __init__(self, design_shape: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        self.body = _ScoreConditionedMLP(int(np.prod(design_shape)), 1, hidden)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1), y)

    def gradient_penalty(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(1 − ‖∇ₓD(x, y)‖)² per sample, differentiable w.r.t. the critic."""
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self(x, y).sum(), x, create_graph=True)
        return (1.0 - grad.flatten(1).norm(dim=1, keepdim=True)) ** 2


def gan_epochs(task: Task, settings: Settings) -> int:
    """``settings.gan_epochs``, else the reference's ``initial_epochs``: 100 on TF-Bind-10, 200 elsewhere."""
    return settings.gan_epochs if settings.gan_epochs is not None else epochs_per_task(task.task_id)


def train_inverse_model(
    x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, settings: Settings, ctx: Context, *, epochs: int,
    discrete: bool,
) -> tuple[Generator, dict[str, float]]:
    """Train the weighted conditional WGAN-GP on (x, y); returns it and its last epoch's mean losses.

    ``x`` is (rows, *design_shape): one-hot (rows, length, classes) for discrete designs. Every
    random draw comes from the ``mins/gan/...`` streams.
    """
    design_shape = tuple(x.shape[1:])
    generator = keras_init(Generator(design_shape, settings.latent_size, settings.gan_hidden_size, discrete),
                           ctx.streams.torch("mins/gan/init/generator")).to(ctx.device)
    critic = keras_init(Critic(design_shape, settings.gan_hidden_size),
                        ctx.streams.torch("mins/gan/init/critic")).to(ctx.device)
    betas = (settings.adam_beta_1, settings.adam_beta_2)
    generator_opt = keras_adam(generator.parameters(), settings.generator_lr, betas)
    critic_opt = keras_adam(critic.parameters(), settings.discriminator_lr, betas)
    rng = ctx.streams.torch("mins/gan/noise", ctx.device)
    order = torch.randperm(len(x), generator=ctx.streams.torch("mins/gan/split"))
    batches = order[settings.validation_size:].to(ctx.device).split(settings.gan_batch_size)  # one shuffle, kept

    epoch_metrics: dict[str, float] = {}
    ctx.progress.phase("GAN epochs", epochs)
    for epoch in range(epochs):
        temp = settings.start_temp + (settings.final_temp - settings.start_temp) * epoch / max(epochs - 1, 1)
        sums = {name: torch.zeros((), device=ctx.device) for name in ("critic_loss", "wasserstein", "penalty",
                                                                       "generator_loss")}
        generator_steps = 0
        for step, batch in enumerate(batches):
            xb, yb, wb = x[batch], y[batch], weights[batch]
            if discrete:
                xb = soften(xb, settings.keep, temp, rng)
            with torch.no_grad():
                fake = generator.sample(yb, temp, rng)
            d_real, d_fake = critic(xb, yb), critic(fake, yb)
            mix = torch.rand((len(xb),) + (1,) * (xb.dim() - 1), generator=rng, device=rng.device).to(ctx.device)
            penalty = critic.gradient_penalty(xb * mix + fake * (1 - mix), yb)
            critic_loss = (wb * (d_fake - d_real + settings.penalty_weight * penalty)).mean()
            critic_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            critic_opt.step()
            sums["critic_loss"] += critic_loss.detach()
            sums["wasserstein"] += (d_real - d_fake).mean().detach()
            sums["penalty"] += penalty.mean().detach()

            if step % settings.critic_frequency == 0:
                generator_loss = -(wb * critic(generator.sample(yb, temp, rng), yb)).mean()
                generator_opt.zero_grad(set_to_none=True)
                generator_loss.backward()
                generator_opt.step()
                sums["generator_loss"] += generator_loss.detach()
                generator_steps += 1
        counts = {"generator_loss": generator_steps}
        epoch_metrics = {name: float(total) / max(counts.get(name, len(batches)), 1) for name, total in sums.items()}
        epoch_metrics["temp"] = temp
        ctx.log({f"gan/{name}": value for name, value in epoch_metrics.items()}, epoch)
        ctx.progress.advance()
    return generator.eval(), epoch_metrics


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    if task.is_discrete:
        space: DesignSpace = OneHotSpace(task.design_shape, task.num_classes)
        gan_shape = (*task.design_shape, int(task.num_classes or 1))
    else:
        space, gan_shape = DesignSpace.for_task(task, normalize=False), task.design_shape
    features = space.encode(task.x)
    targets = TargetScaler.fit(task.y).transform(task.y)

    # The regularized forward model: trained and measured, never queried by the search.
    noise = ctx.streams.torch("mins/forward/input_noise", ctx.device)

    def noisy_nll(model: GaussianEnsemble, x: torch.Tensor, y: torch.Tensor,
                  weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The NLL on softened one-hot inputs; G is left to the regularizer, on the clean batch."""
        if task.is_discrete:
            x = soften(x.reshape(len(x), *gan_shape), settings.keep, FORWARD_NOISE_TEMP, noise).flatten(1)
        return gaussian_nll(model, x, y, weights)[0], None

    model = GaussianEnsemble(space.num_features, settings.hidden_size, settings.num_layers,
                             generators=ctx.generators("mins/forward/init", 1))
    fit = FitSettings(settings.forward_epochs, settings.forward_batch_size, settings.forward_lr,
                      settings.validation_size)
    splits = draw_splits(len(features), 1, settings.validation_size, ctx.streams, "mins/forward", bootstrap=True,
                         shared=True)
    surrogate = ctx.fit("forward", model, space, features, targets, fit, splits, loss=noisy_nll)

    # The inverse model, on streams of its own: its designs never depend on the regularizer.
    device_targets = targets.to(ctx.device)
    weights = torch.from_numpy(score_weights(targets.numpy(), settings.base_temp)).to(ctx.device)
    generator, gan_metrics = train_inverse_model(features.reshape(len(features), *gan_shape).to(ctx.device),
                                                 device_targets, weights, settings, ctx,
                                                 epochs=gan_epochs(task, settings), discrete=task.is_discrete)
    condition = device_targets.max().expand(settings.num_designs, 1)
    with torch.no_grad():
        designs = generator.sample(condition, SAMPLING_TEMP, ctx.streams.torch("mins/sample", ctx.device))
    metrics = {f"final_{name}": gan_metrics[name] for name in ("generator_loss", "critic_loss", "wasserstein")
               if name in gan_metrics}
    metrics["condition_score"] = float(task.normalize_score(task.y.max()))  # y*, in the summary's score units
    return Proposal(designs=space.decode(designs.flatten(1)), surrogates=[surrogate], metrics=metrics,
                    regularizer_affects_search=False)


BASELINE = Baseline("mins", Settings, propose, order=8, quick=QUICK, per_task_defaults={"gan_epochs": epochs_per_task})
