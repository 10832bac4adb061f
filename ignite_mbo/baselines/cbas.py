"""Conditioning by Adaptive Sampling (CbAS; Brookes, Park & Listgarten, ICML 2019).

Reference: design-baselines ``cbas`` with its TF-Bind-8 configuration. A bootstrap ensemble of five
small Gaussian MLPs scores designs; a VAE over designs is the search model. A prior VAE p is fit
to the offline data, copied into q, and for each iteration q is refit by weighted maximum
likelihood on its own samples x ~ q(x|z), z ~ N(0, I), with importance weights

    w(x) = p(x|z) / q(x|z) · P(y > γ | x),

γ the ``percentile``-th percentile of the ensemble's mean predictions on the samples and
P(y > γ | x) the survival function of the ensemble's Gaussian mixture. The answer is
``num_designs`` samples of the final q.

Regularized models: the five ensemble members (each with its own regularizer); the VAEs are not.

Deliberate deviations:
* the ensemble reads the shared ``DesignSpace`` features (logits / z-scored x), not an embedding;
  the VAE does embed the integer tokens as the reference does (z-scored x for continuous tasks);
* the importance weights are rescaled to mean 1 per iteration (in log space, so they cannot
  overflow); the reference uses the raw ratios, which only rescales the loss under Adam;
* the VAE's Gaussians use exp(log std) as their scale (the reference's encoder uses a softplus).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from ignite_mbo.baselines.base import Context, Proposal, TrainedSurrogate
from ignite_mbo.baselines.ensemble import SMALL_ENSEMBLE_QUICK, SmallEnsembleSettings, train_small_ensemble
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.tasks import Task
from ignite_mbo.training import MetricLogger


class Settings(SmallEnsembleSettings):
    """design-baselines' cbas TF-Bind-8 configuration (the ensemble fields come from ``SmallEnsembleSettings``)."""

    learning_rate: float = 3e-4  # the ensemble's Adam learning rate in the cbas configuration
    latent_size: int = 32
    vae_hidden_size: int = 256
    vae_num_layers: int = 1
    embedding_size: int = 256
    vae_learning_rate: float = 3e-4
    vae_beta: float = 1.0
    vae_batch_size: int = 100
    offline_epochs: int | None = None  # None: the reference's per-task value (100 on TF-Bind-10, else 200)
    online_batches: int = 10  # each of vae_batch_size samples; validation_size of them are held out
    online_epochs: int = 10
    iterations: int = 20
    percentile: float = 80.0

    @model_validator(mode="after")
    def _samples_left_to_fit(self) -> Settings:
        if self.online_batches * self.vae_batch_size <= self.validation_size:
            raise ValueError("online_batches * vae_batch_size must exceed validation_size")
        return self


QUICK = {**SMALL_ENSEMBLE_QUICK, "batch_size": 500, "latent_size": 8, "vae_hidden_size": 32, "embedding_size": 8,
         "vae_batch_size": 500, "offline_epochs": 1, "online_batches": 1, "online_epochs": 1, "iterations": 2}


def _soft_clip(logstd: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Keep ``logstd`` smoothly between two learned bounds (as the ensemble's Gaussian head does)."""
    logstd = high - F.softplus(high - logstd)
    return low + F.softplus(logstd - low)


def _mlp(input_size: int, hidden_size: int, num_layers: int, output_size: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_layers):
        layers += [nn.Linear(input_size, hidden_size), nn.LeakyReLU(0.3)]
        input_size = hidden_size
    return nn.Sequential(*layers, nn.Linear(input_size, output_size))


class DesignVAE(nn.Module):
    """A VAE over designs: tokens (n, L) with a categorical decoder, or vectors (n, d) with a Gaussian one."""

    def __init__(self, design_shape: tuple[int, ...], num_classes: int | None, settings: Settings,
                 initial_min_std: float = 0.1, initial_max_std: float = 0.2) -> None:
        super().__init__()
        self.design_shape = design_shape
        self.num_classes = num_classes
        self.latent_size = settings.latent_size
        self.beta = settings.vae_beta
        size = int(np.prod(design_shape))
        if num_classes is None:
            self.embed: nn.Module = nn.Flatten()
            encoder_input, decoder_output = size, 2 * size
        else:
            self.embed = nn.Sequential(nn.Embedding(num_classes, settings.embedding_size), nn.Flatten())
            encoder_input, decoder_output = size * settings.embedding_size, size * num_classes
        hidden, layers = settings.vae_hidden_size, settings.vae_num_layers
        self.encoder = _mlp(encoder_input, hidden, layers, 2 * settings.latent_size)
        self.decoder = _mlp(settings.latent_size, hidden, layers, decoder_output)
        bounds = torch.tensor([math.log(initial_min_std), math.log(initial_max_std)])
        self.encoder_logstd_bounds = nn.Parameter(bounds.clone())
        self.decoder_logstd_bounds = nn.Parameter(bounds.clone())

    def encode(self, x: torch.Tensor) -> Normal:
        """q(z | x), a diagonal Gaussian with batch shape (n, latent_size)."""
        mean, logstd = self.encoder(self.embed(x)).chunk(2, dim=-1)
        return Normal(mean, _soft_clip(logstd, *self.encoder_logstd_bounds).exp())

    def decode(self, z: torch.Tensor) -> Independent:
        """p(x | z), one distribution per latent with event shape ``design_shape``."""
        out = self.decoder(z).reshape(len(z), *self.design_shape, -1)
        if self.num_classes is not None:
            return Independent(Categorical(logits=out), len(self.design_shape))
        mean, logstd = out[..., 0], out[..., 1]
        return Independent(Normal(mean, _soft_clip(logstd, *self.decoder_logstd_bounds).exp()),
                           len(self.design_shape))

    def loss(self, x: torch.Tensor, weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Weighted negative ELBO with a β-weighted KL term, one reparameterised latent per design."""
        posterior = self.encode(x)
        noise = torch.randn(posterior.loc.shape, generator=generator).to(x.device)
        z = posterior.loc + posterior.scale * noise
        nll = -self.decode(z).log_prob(x)
        kl = torch.distributions.kl_divergence(posterior, Normal(0.0, 1.0)).sum(dim=-1)
        return (weights * (nll + self.beta * kl)).mean()


def sample(distribution: Distribution, generator: torch.Generator) -> torch.Tensor:
    """Draw one design per batch element of a ``DesignVAE.decode`` distribution, reproducibly."""
    base = distribution.base_dist if isinstance(distribution, Independent) else distribution
    if isinstance(base, Categorical):
        probs = base.probs.reshape(-1, base.probs.shape[-1])
        draws = torch.multinomial(probs.cpu(), 1, generator=generator)
        return draws.reshape(base.batch_shape).to(probs.device)
    noise = torch.randn(base.loc.shape, generator=generator).to(base.loc.device)
    return base.loc + base.scale * noise


def fit_vae(vae: DesignVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, weights: torch.Tensor, *,
            epochs: int, batch_size: int, validation_size: int, generator: torch.Generator,
            log: MetricLogger | None = None, prefix: str = "") -> dict[str, float]:
    """Weighted maximum likelihood with a random held-out split; returns the last epoch's losses.

    The validation loss is unweighted. Each epoch's losses go to ``log`` (if given) with ``prefix``.
    """
    order = torch.randperm(len(x), generator=generator).to(x.device)
    val_rows, train_rows = order[:validation_size], order[validation_size:]
    metrics: dict[str, float] = {}
    for epoch in range(epochs):
        vae.train()
        losses = []
        for batch in train_rows[torch.randperm(len(train_rows), generator=generator).to(x.device)].split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = vae.loss(x[batch], weights[batch], generator)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        vae.eval()
        with torch.no_grad():
            val_loss = vae.loss(x[val_rows], torch.ones(len(val_rows), device=x.device), generator)
        metrics = {"train_loss": float(np.mean(losses)), "val_loss": float(val_loss)}
        if log is not None:
            log({prefix + key: value for key, value in metrics.items()}, epoch)
    return metrics


def ensemble_predictive(surrogates: list[TrainedSurrogate],
                        features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's Gaussian mean and std on ``features``, both (n, num_models)."""
    means, logstds = zip(*(s.model(features) for s in surrogates))
    return torch.cat(means, dim=1), torch.cat(logstds, dim=1).exp()


class CbAS:
    """The CbAS search state: the ensemble, the prior VAE p and the adapted VAE q."""

    def __init__(self, task: Task, space: DesignSpace, surrogates: list[TrainedSurrogate], prior: DesignVAE,
                 settings: Settings, ctx: Context, generator: torch.Generator) -> None:
        self.task, self.space, self.surrogates, self.settings, self.ctx = task, space, surrogates, settings, ctx
        self.prior = prior.eval()
        self.search = copy.deepcopy(prior)
        self.optimizer = torch.optim.Adam(self.search.parameters(), lr=settings.vae_learning_rate)
        self.generator = generator

    def features(self, designs: torch.Tensor) -> torch.Tensor:
        """VAE designs (tokens, or z-scored x) -> the ensemble's input features."""
        if self.task.is_discrete:
            return self.space.encode(designs.cpu().numpy()).to(self.ctx.device)
        return designs

    def raw_designs(self, designs: torch.Tensor) -> np.ndarray:
        if self.task.is_discrete:
            return designs.cpu().numpy().astype(self.task.x.dtype)
        return self.space.decode(designs)

    @torch.no_grad()
    def draw(self, count: int) -> torch.Tensor:
        """``count`` designs from the search VAE."""
        z = torch.randn(count, self.search.latent_size, generator=self.generator).to(self.ctx.device)
        return sample(self.search.decode(z), self.generator)

    @torch.no_grad()
    def weighted_samples(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Samples of q with their importance weights (mean 1), and the iteration's statistics."""
        count = self.settings.online_batches * self.settings.vae_batch_size
        z = torch.randn(count, self.search.latent_size, generator=self.generator).to(self.ctx.device)
        q_x, p_x = self.search.decode(z), self.prior.decode(z)
        x = sample(q_x, self.generator)
        means, stds = ensemble_predictive(self.surrogates, self.features(x))
        predicted = means.mean(dim=1)
        gamma = torch.quantile(predicted, self.settings.percentile / 100, interpolation="nearest")
        exceed = torch.special.ndtr((means - gamma) / stds).mean(dim=1)  # P(y > γ) under the mixture
        log_w = p_x.log_prob(x) - q_x.log_prob(x) + exceed.clamp_min(1e-30).log()
        weights = len(x) * torch.softmax(log_w, dim=0)
        stats = {"gamma": float(gamma), "predicted_mean": float(predicted.mean()),
                 "ess": float(weights.sum() ** 2 / (weights**2).sum())}
        return x, weights, stats

    def step(self) -> dict[str, float]:
        """One CbAS iteration: sample, weight, refit q by weighted maximum likelihood."""
        x, weights, stats = self.weighted_samples()
        losses = fit_vae(self.search, self.optimizer, x, weights, epochs=self.settings.online_epochs,
                         batch_size=self.settings.vae_batch_size, validation_size=self.settings.validation_size,
                         generator=self.generator)
        return {**stats, "vae_train_loss": losses["train_loss"], "vae_val_loss": losses["val_loss"]}


def vae_data(task: Task, space: DesignSpace) -> torch.Tensor:
    """The offline designs as the VAE sees them: integer tokens, or z-scored x."""
    return torch.from_numpy(task.x.astype(np.int64)) if task.is_discrete else space.encode(task.x)


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = DesignSpace.for_task(task)
    surrogates = train_small_ensemble(task, space, ctx, settings)

    x = vae_data(task, space).to(ctx.device)
    torch.manual_seed(ctx.seed * 1000 + 100)
    prior = DesignVAE(task.design_shape, task.num_classes, settings).to(ctx.device)
    offline_epochs = settings.offline_epochs
    if offline_epochs is None:
        offline_epochs = 100 if task.task_id.startswith("TFBind10") else 200
    fit_vae(prior, torch.optim.Adam(prior.parameters(), lr=settings.vae_learning_rate), x,
            torch.ones(len(x), device=ctx.device), epochs=offline_epochs, batch_size=settings.vae_batch_size,
            validation_size=settings.validation_size, generator=ctx.generator(100), log=ctx.log, prefix="prior_vae/")

    cbas = CbAS(task, space, surrogates, prior, settings, ctx, ctx.generator(101))
    stats: dict[str, float] = {}
    for iteration in range(settings.iterations):
        stats = cbas.step()
        ctx.log({f"cbas/{key}": value for key, value in stats.items()}, iteration)

    designs = cbas.draw(settings.num_designs)
    with torch.no_grad():
        final_mean = ensemble_predictive(surrogates, cbas.features(designs))[0].mean()
    metrics = {"final_predicted_mean": float(final_mean)}
    metrics.update({f"final_{key}": stats[key] for key in ("gamma", "ess") if key in stats})
    return Proposal(designs=cbas.raw_designs(designs), surrogates=surrogates, metrics=metrics)
