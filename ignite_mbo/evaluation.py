"""Scoring a proposal: oracle percentiles of the designs and the surrogate's sharpness."""

from __future__ import annotations

import math

import numpy as np
import torch

from ignite_mbo.baselines.base import Proposal
from ignite_mbo.tasks import Task
from ignite_mbo.training import SHARPNESS_RHO, mean_gradient_norm

PERCENTILES = (100, 80, 50)


def nearest_rank(values: np.ndarray, percentile: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``percentile`` % of values at or below it."""
    ordered = np.sort(np.asarray(values, dtype=np.float64).ravel())
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return float(ordered[rank - 1])


def evaluate(task: Task, proposal: Proposal) -> tuple[dict[str, float], np.ndarray]:
    """Summary metrics of a proposal, and the normalised oracle score of each design."""
    scores = task.normalize_score(task.oracle(proposal.designs))[:, 0]
    summary: dict[str, float] = {f"score_{p}th": nearest_rank(scores, p) for p in PERCENTILES}
    summary["score_mean"] = float(scores.mean())
    summary["num_candidates"] = len(scores)
    summary["sharpness_train"] = _mean_sharpness(proposal, task.x)
    summary["sharpness_candidates"] = _mean_sharpness(proposal, proposal.designs)
    lambdas = [s.regularizer.state_dict().get("lambda", 0.0) for s in proposal.surrogates]
    summary["final_lambda"] = float(np.mean(lambdas)) if lambdas else 0.0
    return summary, scores


def _mean_sharpness(proposal: Proposal, designs: np.ndarray) -> float:
    """ρ‖∇_β G‖ measured with ``SHARPNESS_RHO`` on ``designs``, averaged over the regularized models."""
    if not proposal.surrogates:
        return float("nan")
    values = []
    for surrogate in proposal.surrogates:
        device = next(surrogate.model.parameters()).device
        rows = torch.randperm(len(designs), generator=torch.Generator().manual_seed(0))[:128 * 16].numpy()
        features = surrogate.space.encode(designs[np.sort(rows)]).to(device)
        values.append(SHARPNESS_RHO * mean_gradient_norm(surrogate.model, features))
    return float(np.mean(values))
