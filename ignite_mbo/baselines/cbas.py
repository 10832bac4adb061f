"""Conditioning by Adaptive Sampling (CbAS; Brookes, Park & Listgarten, ICML 2019).

Reference: design-baselines ``cbas`` with its TF-Bind-8 configuration. A bootstrap ensemble of five
small Gaussian MLPs scores designs; a VAE over designs is the search model. A prior VAE p is fit
to the offline data, copied into q, and for each iteration q is refit by weighted maximum
likelihood on its own samples x ~ q(x|z), z ~ N(0, I), with importance weights

    w(x) = p(x|z) / q(x|z) · P(y > γ | x),

γ the ``percentile``-th percentile of the ensemble's mean predictions on the samples and
P(y > γ | x) the survival function of the ensemble's Gaussian mixture. The answer is
``num_designs`` samples of the final q.

Regularized models: the five ensemble members (each with its own λ); the VAEs are not. On
discrete tasks both the ensemble and the VAEs read integer tokens through embeddings, as the
reference does. docs/fidelity.md lists every known difference from the reference.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from ignite_mbo.baselines.base import Baseline, Context, Count, Proposal, Rate, Scale, Size, TrainedSurrogate, epochs_per_task
from ignite_mbo.baselines.ensemble import ENSEMBLE_QUICK, EnsembleSettings, token_space, train_ensemble
from ignite_mbo.models import GaussianEnsemble, keras_init
from ignite_mbo.progress import SILENT, Progress
from ignite_mbo.tasks import Task
from ignite_mbo.training import MetricLogger, keras_adam


class Settings(EnsembleSettings):
    """design-baselines' cbas TF-Bind configuration (the ensemble fields come from ``EnsembleSettings``)."""

    learning_rate: Rate = Field(3e-4, description="Adam learning rate of the ensemble (the cbas configuration's)")
    latent_size: Size = Field(32, description="latent dimensions of the VAE")
    vae_hidden_size: Size = Field(256, description="units of each hidden layer of the VAE's encoder and decoder")
    vae_num_layers: Annotated[int, Field(ge=1, le=16)] = Field(1, description="hidden layers of the encoder "
                                                                                 "and of the decoder")
    vae_embedding_size: Size = Field(256, description="token embedding width of the VAE (discrete tasks)")
    vae_learning_rate: Rate = Field(3e-4, description="Adam learning rate of the VAE")
    vae_beta: Scale = Field(1.0, description="weight β of the VAE's KL term")
    vae_batch_size: Size = Field(100, description="minibatch size of the VAE, and designs per online batch")
    offline_epochs: Count | None = Field(None, description="epochs of the prior VAE on the offline data "
                                                           "(unset: the reference's per-task value)")
    online_batches: Count = Field(10, description="batches of vae_batch_size samples per iteration; "
                                                  "validation_size of them are held out")
    online_epochs: Count = Field(10, description="epochs that refit the search VAE in each iteration")
    iterations: Count = Field(20, description="CbAS iterations (refits of the search VAE)")
    percentile: Annotated[float, Field(ge=0, le=100)] = Field(80.0, description="percentile γ of the "
                                                                               "samples' predictions to exceed")

    @model_validator(mode="after")
    def _samples_left_to_fit(self) -> Settings:
        if self.online_batches * self.vae_batch_size <= self.validation_size:
            raise ValueError("online_batches * vae_batch_size must exceed validation_size")
        return self


QUICK = {**ENSEMBLE_QUICK, "latent_size": 8, "vae_hidden_size": 64, "vae_embedding_size": 32, "offline_epochs": 20,
         "online_epochs": 2, "iterations": 5}
"""Quick fidelity: a quarter of the VAE widths, a tenth of the offline epochs, a quarter of the iterations."""


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
            self.embed = nn.Sequential(nn.Embedding(num_classes, settings.vae_embedding_size), nn.Flatten())
            encoder_input, decoder_output = size * settings.vae_embedding_size, size * num_classes
        hidden, layers = settings.vae_hidden_size, settings.vae_num_layers
        self.encoder = _mlp(encoder_input, hidden, layers, 2 * settings.latent_size)
        self.decoder = _mlp(settings.latent_size, hidden, layers, decoder_output)
        bounds = torch.tensor([math.log(initial_min_std), math.log(initial_max_std)])
        self.encoder_logstd_bounds = nn.Parameter(bounds.clone())
        self.decoder_logstd_bounds = nn.Parameter(bounds.clone())

    def encode(self, x: torch.Tensor) -> Normal:
        """q(z | x), a diagonal Gaussian with batch shape (n, latent_size); its scale is the softplus
        of the clipped log std, as the reference's encoder has it (its decoder uses exp)."""
        mean, logstd = self.encoder(self.embed(x)).chunk(2, dim=-1)
        return Normal(mean, F.softplus(_soft_clip(logstd, *self.encoder_logstd_bounds)))

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
        noise = torch.randn(posterior.loc.shape, generator=generator, device=generator.device).to(x.device)
        z = posterior.loc + posterior.scale * noise
        nll = -self.decode(z).log_prob(x)
        kl = torch.distributions.kl_divergence(posterior, Normal(0.0, 1.0)).sum(dim=-1)
        return (weights * (nll + self.beta * kl)).mean()


def sample(distribution: Distribution, generator: torch.Generator) -> torch.Tensor:
    """Draw one design per batch element of a ``DesignVAE.decode`` distribution, reproducibly."""
    base = distribution.base_dist if isinstance(distribution, Independent) else distribution
    if isinstance(base, Categorical):
        probs = base.probs.reshape(-1, base.probs.shape[-1])
        draws = torch.multinomial(probs.to(generator.device), 1, generator=generator)
        return draws.reshape(base.batch_shape).to(probs.device)
    assert isinstance(base, Normal)
    noise = torch.randn(base.loc.shape, generator=generator, device=generator.device).to(base.loc.device)
    return base.loc + base.scale * noise


def fit_vae(vae: DesignVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, weights: torch.Tensor, *,
            epochs: int, batch_size: int, validation_size: int, generator: torch.Generator,
            log: MetricLogger | None = None, prefix: str = "", progress: Progress = SILENT) -> dict[str, float]:
    """Weighted maximum likelihood with a random held-out split; returns the last epoch's losses.

    The validation loss is unweighted. Each epoch's losses go to ``log`` (if given) with ``prefix``,
    and each epoch advances ``progress``.
    """
    order = torch.randperm(len(x), generator=generator, device=generator.device).to(x.device)
    val_rows, train_rows = order[:validation_size], order[validation_size:]
    metrics: dict[str, float] = {}
    for epoch in range(epochs):
        vae.train()
        total, batches = torch.zeros((), device=x.device), 0
        shuffle = torch.randperm(len(train_rows), generator=generator, device=generator.device).to(x.device)
        for batch in train_rows[shuffle].split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = vae.loss(x[batch], weights[batch], generator)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.detach(), batches + 1
        vae.eval()
        with torch.no_grad():
            val_loss = vae.loss(x[val_rows], torch.ones(len(val_rows), device=x.device), generator)
        metrics = {"train_loss": float(total) / max(batches, 1), "val_loss": float(val_loss)}
        if log is not None:
            log({prefix + key: value for key, value in metrics.items()}, epoch)
        progress.advance()
    return metrics


def ensemble_predictive(surrogate: TrainedSurrogate, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's Gaussian mean and std on designs ``x``, both (n, num_models)."""
    assert isinstance(surrogate.model, GaussianEnsemble)
    mean, logstd = surrogate.model.distribution(x)
    return mean[..., 0].T, logstd[..., 0].T.exp()


class CbAS:
    """The CbAS search state: the ensemble, the prior VAE p and the adapted VAE q."""

    def __init__(self, surrogate: TrainedSurrogate, prior: DesignVAE, settings: Settings, ctx: Context,
                 generator: torch.Generator) -> None:
        self.surrogate, self.settings, self.ctx = surrogate, settings, ctx
        self.prior = prior.eval()
        self.search = copy.deepcopy(prior)
        self.optimizer = keras_adam(self.search.parameters(), settings.vae_learning_rate)
        self.generator = generator

    @torch.no_grad()
    def draw(self, count: int) -> torch.Tensor:
        """``count`` designs from the search VAE."""
        z = torch.randn(count, self.search.latent_size, generator=self.generator, device=self.generator.device)
        return sample(self.search.decode(z), self.generator)

    @torch.no_grad()
    def weighted_samples(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Samples of q with their raw importance weights p(x|z)/q(x|z)·P(y > γ | x), and statistics.

        The weights are not rescaled (the reference uses them raw: under the persistent Adam their
        shrinking scale damps later updates); they are formed in log space and capped at float32's
        largest value so that they cannot overflow to inf."""
        count = self.settings.online_batches * self.settings.vae_batch_size
        z = torch.randn(count, self.search.latent_size, generator=self.generator, device=self.generator.device)
        q_x, p_x = self.search.decode(z), self.prior.decode(z)
        x = sample(q_x, self.generator)
        means, stds = ensemble_predictive(self.surrogate, x)
        predicted = means.mean(dim=1)
        gamma = torch.quantile(predicted, self.settings.percentile / 100, interpolation="nearest")
        exceed = torch.special.ndtr((means - gamma) / stds).mean(dim=1)  # P(y > γ) under the mixture
        log_w = p_x.log_prob(x) - q_x.log_prob(x) + exceed.clamp_min(1e-30).log()
        weights = log_w.double().exp().clamp_max(torch.finfo(torch.float32).max).float()
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


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = token_space(task)  # integer tokens for discrete tasks, z-scored x otherwise: ensemble and VAEs alike
    surrogate = train_ensemble(task, space, ctx, settings)

    x = space.encode(task.x).to(ctx.device)
    prior = keras_init(DesignVAE(task.design_shape, task.num_classes, settings),
                       ctx.streams.torch("cbas/vae/init")).to(ctx.device)
    offline_epochs = settings.offline_epochs or epochs_per_task(task.task_id)
    ctx.progress.phase("prior VAE epochs", offline_epochs)
    fit_vae(prior, keras_adam(prior.parameters(), settings.vae_learning_rate), x,
            torch.ones(len(x), device=ctx.device), epochs=offline_epochs, batch_size=settings.vae_batch_size,
            validation_size=settings.validation_size, generator=ctx.streams.torch("cbas/prior", ctx.device), log=ctx.log,
            prefix="prior_vae/", progress=ctx.progress)

    cbas = CbAS(surrogate, prior, settings, ctx, ctx.streams.torch("cbas/search", ctx.device))
    stats: dict[str, float] = {}
    ctx.progress.phase("CbAS iterations", settings.iterations)
    for iteration in range(settings.iterations):
        stats = cbas.step()
        ctx.log({f"cbas/{key}": value for key, value in stats.items()}, iteration)
        ctx.progress.advance()

    designs = cbas.draw(settings.num_designs)
    with torch.no_grad():
        final_mean = ensemble_predictive(surrogate, designs)[0].mean()
    metrics = {"final_predicted_mean": float(final_mean)}
    metrics.update({f"final_{key}": stats[key] for key in ("gamma", "ess") if key in stats})
    return Proposal(designs=space.decode(designs), surrogates=[surrogate], metrics=metrics)


BASELINE = Baseline("cbas", Settings, propose, order=5, quick=QUICK,
                    per_task_defaults={"offline_epochs": epochs_per_task})
