"""REINFORCE: policy-gradient search over a factorised design distribution, scored by an ensemble.

Reference: design-baselines ``reinforce`` (TF-Bind-8 settings). The regularized models are the 5
bootstrap members of the small forward-model ensemble (``ensemble.train_small_ensemble``), each with
its own regularizer. The policy is a categorical per position for discrete tasks (initial logits: the
log of each token's frequency among the 128 best training designs) or a diagonal Gaussian for
continuous ones (initial mean: the 128 best designs' mean in z-scored x; fixed std 0.1, only the
mean is learned). Each iteration samples a batch, rewards each design with the ensemble's mean
prediction, normalises the rewards within the batch (minus the batch mean, over the batch std) and
takes one Adam step on −E[log π(x)·reward]. At the end 128 designs are sampled from the policy.

Deliberate deviations: the reference multiplies per-position log-probabilities (batch, length) by
rewards (batch, 1) after inserting an axis, which broadcasts every design's log-probability against
every other design's reward, so its discrete loss is the mean log-probability times the mean
normalised reward (≈0) and gives no design credit for its own reward; here each design's summed
log-probability meets its own reward. The reference's forward model embeds integer tokens; here it
reads the shared logit features (see ``ensemble``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import distributions as D

from ignite_mbo.baselines.base import Context, Proposal, top_designs
from ignite_mbo.baselines.ensemble import (
    SMALL_ENSEMBLE_QUICK, SmallEnsembleSettings, ensemble_mean, train_small_ensemble,
)
from ignite_mbo.design_space import DesignSpace
from ignite_mbo.tasks import Task


class Settings(SmallEnsembleSettings):
    policy_lr: float = 0.01
    policy_batch_size: int = 256  # the reference uses 256 on discrete tasks ...
    policy_batch_size_continuous: int = 2048  # ... and 2048 on continuous ones
    exploration_std: float = 0.1  # fixed std of the Gaussian policy (continuous tasks)
    iterations: int = 200


QUICK = {**SMALL_ENSEMBLE_QUICK, "iterations": 20, "policy_batch_size_continuous": 256}


@dataclass
class Policy:
    """A factorised distribution over designs: its trainable parameter and how to read its samples."""

    parameter: torch.nn.Parameter
    distribution: Callable[[], D.Distribution]  # batch shape (), log_prob/entropy summed over the design
    sample: Callable[[int, torch.Generator], torch.Tensor]  # seeded draws, shaped like the design
    to_features: Callable[[torch.Tensor], torch.Tensor]  # samples -> surrogate input
    to_designs: Callable[[torch.Tensor], np.ndarray]  # samples -> raw designs


def categorical_policy(task: Task, space: DesignSpace, best: np.ndarray, device: torch.device) -> Policy:
    """One categorical per position, started at the token frequencies of ``best`` (unseen tokens: never drawn)."""
    counts = np.stack([np.bincount(column, minlength=task.num_classes) for column in best.T])
    frequencies = torch.as_tensor(counts / len(best), dtype=torch.float32, device=device)
    logits = torch.nn.Parameter(frequencies.log().clamp_min(torch.finfo(torch.float32).min))

    def distribution() -> D.Distribution:
        return D.Independent(D.Categorical(logits=logits), 1)

    def sample(count: int, generator: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(logits.detach(), dim=-1).cpu()
        return torch.multinomial(probs, count, replacement=True, generator=generator).T.to(device)

    return Policy(logits, distribution, sample,
                  to_features=lambda tokens: space.encode(tokens.cpu().numpy()).to(device),
                  to_designs=lambda tokens: tokens.cpu().numpy().astype(task.x.dtype))


def gaussian_policy(space: DesignSpace, best: np.ndarray, std: float, device: torch.device) -> Policy:
    """A diagonal Gaussian in z-scored x with fixed std, its mean started at the mean of ``best``."""
    mean = torch.nn.Parameter(space.encode(best).to(device).mean(dim=0))
    scale = torch.full_like(mean, std)

    def distribution() -> D.Distribution:
        return D.Independent(D.Normal(mean, scale), 1)

    def sample(count: int, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn((count, *mean.shape), generator=generator).to(device)
        return mean.detach() + scale * noise

    return Policy(mean, distribution, sample, to_features=lambda x: x, to_designs=space.decode)


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    space = DesignSpace.for_task(task)
    surrogates = train_small_ensemble(task, space, ctx, settings)
    reward_model = ensemble_mean(surrogates)

    best = top_designs(task, settings.num_designs)
    if task.is_discrete:
        policy, batch_size = categorical_policy(task, space, best, ctx.device), settings.policy_batch_size
    else:
        policy = gaussian_policy(space, best, settings.exploration_std, ctx.device)
        batch_size = settings.policy_batch_size_continuous
    optimizer = torch.optim.Adam([policy.parameter], lr=settings.policy_lr)
    generator = ctx.generator(settings.num_models)

    for iteration in range(settings.iterations):
        samples = policy.sample(batch_size, generator)
        with torch.no_grad():
            reward = reward_model(policy.to_features(samples))[:, 0]
        advantage = (reward - reward.mean()) / reward.std().clamp_min(1e-8)
        distribution = policy.distribution()
        loss = -(distribution.log_prob(samples) * advantage).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ctx.log({"search/mean_reward": float(reward.mean()), "search/entropy": float(distribution.entropy().detach())},
                iteration)

    final = policy.sample(settings.num_designs, generator)
    with torch.no_grad():
        predicted = reward_model(policy.to_features(final))
    metrics = {"final_entropy": float(policy.distribution().entropy().detach()),
               "final_predicted_score": float(predicted.mean())}
    return Proposal(designs=policy.to_designs(final), surrogates=surrogates, metrics=metrics)
