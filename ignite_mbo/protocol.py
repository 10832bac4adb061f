"""The paper's protocol, and what a trial's configuration changes about it.

The paper's protocol is every baseline's full-fidelity defaults (the reference code's settings, see
docs/fidelity.md), the published regularizer hyperparameters and the tasks' default options. A
trial that differs anywhere carries the differences as ``protocol_deviations`` (MLflow, results
table, gain report), e.g. ``"fidelity=quick"`` or ``"per_design_credit=True,regularizer.rho=0.1"``.
"""

from __future__ import annotations

from typing import Any

from ignite_mbo.baselines import load
from ignite_mbo.config import TrialConfig


def protocol_deviations(config: TrialConfig) -> list[str]:
    """``name=value`` for each setting of ``config`` that differs from the paper's protocol."""
    deviations = ["fidelity=quick"] if config.fidelity == "quick" else []
    paper = load(config.baseline).Settings()
    for name, value in config.baseline_options.items():
        if getattr(paper, name, object()) != value:
            deviations.append(f"{name}={value}")
    regularizer = config.regularizer
    published = type(regularizer)()
    for name in type(regularizer).model_fields:
        setting: Any = getattr(regularizer, name)
        if setting != getattr(published, name):
            deviations.append(f"regularizer.{name}={setting}")
    deviations += [f"task.{name}={value}" for name, value in sorted(config.task_options.items())]
    return deviations
