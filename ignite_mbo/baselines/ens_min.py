"""Ensemble-min gradient ascent: grad-ascent with five surrogates, climbing the minimum of their
predictions, a pessimistic score (design-baselines ``gradient_ascent`` min-ensemble experiments,
``gradient_ascent_IGNITE/min_ensemble_experiments.py``)."""

from __future__ import annotations

from pydantic import Field

from ignite_mbo.baselines import grad_ascent
from ignite_mbo.baselines.base import Baseline, Context, Count, Proposal
from ignite_mbo.tasks import Task


class Settings(grad_ascent.Settings):
    num_models: Count = Field(5, description=grad_ascent.Settings.model_fields["num_models"].description)


QUICK = grad_ascent.QUICK


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    return grad_ascent.propose(task, settings, ctx, grad_ascent.min_of_members)


BASELINE = Baseline("ens-min", Settings, propose, order=3, quick=QUICK)
