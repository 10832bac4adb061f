"""Ensemble-min gradient ascent (design-baselines ``gradient_ascent``, min-ensemble experiments).

Five grad-ascent surrogates (Gaussian MLP 2×2048, same training), each fit on a bootstrap resample
with its own regularizer (all five are the regularized models), then 200 gradient-ascent steps on
the *minimum* of their predictions (a pessimistic score) from the 128 best training designs (logit
space for discrete tasks).
"""

from __future__ import annotations

from ignite_mbo.baselines.base import Context, Proposal
from ignite_mbo.baselines.ensemble import ASCENT_QUICK as QUICK
from ignite_mbo.baselines.ensemble import AscentSettings as Settings
from ignite_mbo.baselines.ensemble import min_of_members, propose_ensemble_ascent
from ignite_mbo.tasks import Task

__all__ = ["QUICK", "Settings", "propose"]


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    return propose_ensemble_ascent(task, settings, ctx, aggregate=min_of_members)
