"""How the MLflow UI opens on what matters (pure data; the MLflow calls are in ``mlflow_store``).

* Trials nest under their sweep's parent run (tag ``mlflow.parentRunId``) and carry the sweep's
  folder name as tag ``ignite_mbo.sweep``, so the experiment page lists one row per sweep.
* The link a sweep prints opens a *shared view* of the experiment (MLflow stores it as the
  experiment tag ``mlflow.sharedViewState.<key>``; the URL names it with ``viewStateShareKey``):
  runs grouped by sweep, groups open, the score columns shown.
* Per-epoch curves keep their ``surrogate/`` prefix in MLflow, so a trial's "Model metrics" page puts
  them first, a section per prefix (λ, sharpness, the losses), and the single-value scores after them.
"""

from __future__ import annotations

import json

SWEEP_TAG = "ignite_mbo.sweep"
"""The sweep's folder name (``quick-2``) on its parent run and every trial run: the UI groups by it."""
PARENT_TAG = "mlflow.parentRunId"
SHARED_VIEW_KEY = "ignite_mbo_scores"
SHARED_VIEW_TAG = f"mlflow.sharedViewState.{SHARED_VIEW_KEY}"
SCORE_COLUMNS = ("score_100th", "score_80th", "score_50th")
PARAM_COLUMNS = ("regularizer.name",)


def shared_view() -> str:
    """The experiment page's shared view: grouped by sweep, the scores and the regularizer as columns."""
    columns = ([f"metrics.`{name}`" for name in SCORE_COLUMNS] + [f"params.`{name}`" for name in PARAM_COLUMNS])
    return json.dumps({
        "selectedColumns": columns,
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": SWEEP_TAG}]},
    })


def sweep_name(parent_run_name: str) -> str:
    """``sweep:quick-2`` -> ``quick-2``."""
    return parent_run_name.removeprefix("sweep:")
