"""Scoring a proposal: oracle percentiles of the designs and the surrogates' sharpness."""

from __future__ import annotations

import math

import numpy as np
import torch

from ignite_mbo.baselines.base import Proposal
from ignite_mbo.tasks import Task
from ignite_mbo.training import SHARPNESS_RHO, gradient_norms

PERCENTILES = (100, 80, 50)
SHARPNESS_ROWS = 128 * 16  # designs (at most) on which sharpness is measured, in batches of 128


def nearest_rank(values: np.ndarray, percentile: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``percentile`` % of values at or below it."""
    ordered = np.sort(np.asarray(values, dtype=np.float64).ravel())
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return float(ordered[rank - 1])


def evaluate(task: Task, proposal: Proposal) -> tuple[dict[str, float | str | bool], np.ndarray]:
    """Summary metrics of a proposal, and the normalised oracle score of each design."""
    scores = task.normalize_score(task.oracle(proposal.designs))[:, 0]
    summary: dict[str, float | str | bool] = {f"score_{p}th": nearest_rank(scores, p) for p in PERCENTILES}
    summary["score_mean"] = float(scores.mean())
    summary["num_candidates"] = len(scores)
    summary["sharpness_train"] = mean_sharpness(proposal, task.x)
    summary["sharpness_candidates"] = mean_sharpness(proposal, proposal.designs)
    lambdas = [value for s in proposal.surrogates for value in s.regularizer.lambdas()]
    summary["final_lambda"] = float(np.mean(lambdas)) if lambdas else 0.0
    return summary, scores


def mean_sharpness(proposal: Proposal, designs: np.ndarray) -> float:
    """ρ‖∇_β G‖ measured with ``SHARPNESS_RHO`` on ``designs`` (batches of 128), averaged over every
    member of every regularized model."""
    if not proposal.surrogates:
        return float("nan")
    rows = np.sort(torch.randperm(len(designs), generator=torch.Generator().manual_seed(0))[:SHARPNESS_ROWS].numpy())
    values = []
    for surrogate in proposal.surrogates:
        device = next(surrogate.model.parameters()).device
        features = surrogate.space.encode(designs[rows]).to(device)
        norms = [gradient_norms(surrogate.model, features[start:start + 128]) for start in range(0, len(features), 128)]
        values.append(SHARPNESS_RHO * torch.stack(norms).mean(dim=0).cpu())
    return float(torch.cat(values).mean())
