"""REINFORCE: policy-gradient search over a factorised design distribution, scored by an ensemble.

Reference: design-baselines ``reinforce`` as the IGNITE code runs it (``reinforce_IGNITE``, TF-Bind
configs). The regularized models are the 5 bootstrap members of the forward-model ensemble
(``ensemble.train_ensemble``, token embeddings on discrete tasks). The policy is a categorical per
position for discrete tasks (initial logits: the log of each token's frequency among the 128 best
training designs) or a diagonal Gaussian for continuous ones (initial mean: the 128 best designs'
mean in z-scored x; fixed std 0.1, only the mean is learned). Each iteration samples a batch,
rewards each design with the ensemble's mean prediction, normalises the rewards within the batch
(minus the mean, over the population std) and takes one Adam step.

The paper's loss (the default) is the reference's: it multiplies the per-position log-probabilities
(batch, length) by the advantages (batch, 1) after inserting an axis, which broadcasts every design's
log-probability against every design's advantage, so the loss is mean(log π) × mean(advantage) ≈ 0
and the policy barely moves from its initial frequencies. ``per_design_credit=True`` (a named
deviation, docs/fidelity.md) gives each design its own advantage: REINFORCE as written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field
from torch import distributions as D

from ignite_mbo.baselines.base import Baseline, Context, Count, Proposal, Rate, Size, top_designs
from ignite_mbo.baselines.ensemble import ENSEMBLE_QUICK, EnsembleSettings, ensemble_mean, token_space, train_ensemble
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.tasks import Task
from ignite_mbo.training import keras_adam


class Settings(EnsembleSettings):
    policy_lr: Rate = Field(0.01, description="Adam learning rate of the policy")
    policy_batch_size: Size = Field(256, description="designs sampled per iteration on discrete tasks")
    policy_batch_size_continuous: Size = Field(2048, description="designs sampled per iteration on continuous tasks")
    exploration_std: Rate = Field(0.1, description="fixed std of the Gaussian policy (continuous tasks)")
    iterations: Count = Field(200, description="policy-gradient iterations")
    per_design_credit: bool = Field(False, description="named deviation: each design's log-probability meets "
                                                      "its own advantage (the reference broadcasts them)")


QUICK = {**ENSEMBLE_QUICK, "iterations": 20, "policy_batch_size_continuous": 256}


@dataclass
class Policy:
    """A factorised distribution over designs: its trainable parameter and how to read its samples."""

    parameter: torch.nn.Parameter
    distribution: Callable[[], D.Distribution]  # event shape: one position (discrete) or one design (continuous)
    sample: Callable[[int, torch.Generator], torch.Tensor]  # seeded draws, shaped like the design
    to_features: Callable[[torch.Tensor], torch.Tensor]  # samples -> surrogate input
    to_designs: Callable[[torch.Tensor], np.ndarray]  # samples -> raw designs


def categorical_policy(task: Task, best: np.ndarray, device: torch.device) -> Policy:
    """One categorical per position, started at the token frequencies of ``best`` (unseen tokens: never drawn)."""
    counts = np.stack([np.bincount(column, minlength=int(task.num_classes or 0)) for column in best.T])
    frequencies = torch.as_tensor(counts / len(best), dtype=torch.float32, device=device)
    logits = torch.nn.Parameter(frequencies.log().clamp_min(torch.finfo(torch.float32).min))

    def distribution() -> D.Distribution:
        return D.Categorical(logits=logits)  # batch shape (length,), as the reference's marginal

    def sample(count: int, generator: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(logits.detach(), dim=-1).cpu()
        return torch.multinomial(probs, count, replacement=True, generator=generator).T.to(device)

    return Policy(logits, distribution, sample, to_features=lambda tokens: tokens,
                  to_designs=lambda tokens: tokens.cpu().numpy().astype(task.x.dtype))


def gaussian_policy(space: DesignSpace, best: np.ndarray, std: float, device: torch.device) -> Policy:
    """A diagonal Gaussian in z-scored x with fixed std, its mean started at the mean of ``best``."""
    mean = torch.nn.Parameter(space.encode(best).to(device).mean(dim=0))
    scale = torch.full_like(mean, std)

    def distribution() -> D.Distribution:
        return D.Normal(mean, scale)

    def sample(count: int, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn((count, *mean.shape), generator=generator).to(device)
        return mean.detach() + scale * noise

    return Policy(mean, distribution, sample, to_features=lambda x: x, to_designs=space.decode)


def policy_loss(log_probs: torch.Tensor, advantage: torch.Tensor, per_design_credit: bool) -> torch.Tensor:
    """The policy-gradient loss from per-position (or per-feature) log-probabilities (batch, length).

    Reference: ``mean(-log_probs[:, None] * advantage)`` with advantage (batch, 1), a (batch, batch,
    length) broadcast whose mean is −mean(log π)·mean(advantage). Per-design credit:
    −mean over designs of (Σ_positions log π)·advantage.
    """
    if per_design_credit:
        return -(log_probs.sum(dim=1) * advantage).mean()
    return -(log_probs.mean() * advantage.mean())


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = token_space(task)
    surrogate = train_ensemble(task, space, ctx, settings)
    reward_model = ensemble_mean(surrogate)

    best = top_designs(task, settings.num_designs)
    if task.is_discrete:
        policy, batch_size = categorical_policy(task, best, ctx.device), settings.policy_batch_size
    else:
        policy = gaussian_policy(space, best, settings.exploration_std, ctx.device)
        batch_size = settings.policy_batch_size_continuous
    optimizer = keras_adam([policy.parameter], settings.policy_lr)
    generator = ctx.streams.torch("reinforce/policy_samples")

    ctx.progress.phase("policy iterations", settings.iterations)
    for iteration in range(settings.iterations):
        samples = policy.sample(batch_size, generator)
        with torch.no_grad():
            reward = reward_model(policy.to_features(samples))[:, 0]
        centred = reward - reward.mean()
        advantage = centred / centred.std(unbiased=False).clamp_min(1e-8)
        distribution = policy.distribution()
        loss = policy_loss(distribution.log_prob(samples), advantage, settings.per_design_credit)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if iteration % 10 == 0 or iteration == settings.iterations - 1:
            ctx.log({"search/mean_reward": float(reward.mean()),
                     "search/entropy": float(distribution.entropy().sum().detach())}, iteration)
        ctx.progress.advance()

    final = policy.sample(settings.num_designs, generator)
    with torch.no_grad():
        predicted = reward_model(policy.to_features(final))
    metrics = {"final_entropy": float(policy.distribution().entropy().sum().detach()),
               "final_predicted_score": float(predicted.mean())}
    return Proposal(designs=policy.to_designs(final), surrogates=[surrogate], metrics=metrics)


BASELINE = Baseline("reinforce", Settings, propose, order=4, quick=QUICK)
