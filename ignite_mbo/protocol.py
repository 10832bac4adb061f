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
from ignite_mbo.tasks import validate_options

PROTOCOL_DEVIATIONS = "protocol_deviations"
"""The summary key (and results-table column, MLflow tag) holding a trial's deviations, comma-separated ("" when none)."""


def protocol_deviations(config: TrialConfig) -> list[str]:
    """``name=value`` for each setting of ``config`` that differs from the paper's protocol."""
    deviations = ["fidelity=quick"] if config.fidelity == "quick" else []
    baseline = load(config.baseline)
    for name, value in config.baseline_options.items():
        unset_per_task = value is None and name in baseline.per_task_defaults
        if value != baseline.paper_value(name, config.task) and not unset_per_task:
            deviations.append(f"{name}={value}")
    regularizer = config.regularizer
    published = type(regularizer)()
    for name in type(regularizer).model_fields:
        setting: Any = getattr(regularizer, name)
        if setting != getattr(published, name):
            deviations.append(f"regularizer.{name}={setting}")
    task_defaults = validate_options(config.task, {})
    deviations += [f"task.{name}={value}" for name, value in sorted(config.task_options.items())
                   if value != task_defaults.get(name)]
    return deviations
