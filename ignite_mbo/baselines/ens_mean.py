"""Ensemble-mean gradient ascent (design-baselines ``gradient_ascent``, mean-ensemble experiments).

Five grad-ascent surrogates (Gaussian MLP 2×2048, same training), each fit on a bootstrap resample
with its own regularizer (all five are the regularized models), then 200 gradient-ascent steps on
the *mean* of their predictions from the 128 best training designs (logit space for discrete tasks).

Deliberate deviation: the reference's "mean" aggregation reduces with a minimum by mistake (so its
ens-mean equals its ens-min); this is a true mean.
"""

from __future__ import annotations

from ignite_mbo.baselines.base import Context, Proposal
from ignite_mbo.baselines.ensemble import ASCENT_QUICK as QUICK
from ignite_mbo.baselines.ensemble import AscentSettings as Settings
from ignite_mbo.baselines.ensemble import mean_of_members, propose_ensemble_ascent
from ignite_mbo.tasks import Task

__all__ = ["QUICK", "Settings", "propose"]


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    return propose_ensemble_ascent(task, settings, ctx, aggregate=mean_of_members)
