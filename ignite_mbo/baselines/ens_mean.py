"""Ensemble-"mean" gradient ascent: grad-ascent with five surrogates (design-baselines
``gradient_ascent`` mean-ensemble experiments, ``gradient_ascent_IGNITE/mean_ensemble_experiments.py``).

The reference's "mean" aggregation reduces with a minimum, so its ens-mean searches exactly as
ens-min does; that is the paper's protocol and the default here. ``true_mean=True`` (a named
deviation, docs/fidelity.md) ascends the members' average instead.
"""

from __future__ import annotations

from pydantic import Field

from ignite_mbo.baselines import grad_ascent
from ignite_mbo.baselines.base import Baseline, Context, Count, Proposal
from ignite_mbo.tasks import Task


class Settings(grad_ascent.Settings):
    num_models: Count = Field(5, description=grad_ascent.Settings.model_fields["num_models"].description)
    true_mean: bool = Field(False, description="named deviation: ascend the members' average, not their "
                                               "minimum as the reference's \"mean\" ensemble does")


QUICK = grad_ascent.QUICK


def propose(task: Task, settings: Settings, ctx: Context) -> Proposal:
    aggregate = grad_ascent.mean_of_members if settings.true_mean else grad_ascent.min_of_members
    return grad_ascent.propose(task, settings, ctx, aggregate)


BASELINE = Baseline("ens-mean", Settings, propose, order=2, quick=QUICK)
