"""The per-sweep results table: one row per trial, its config and its final metrics (Parquet)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ignite_mbo import baselines
from ignite_mbo.config import TrialConfig
from ignite_mbo.errors import UserError

SUMMARY_COLUMNS = (
    "score_100th", "score_80th", "score_50th", "score_mean", "num_candidates", "sharpness_train",
    "sharpness_candidates", "final_lambda", "regularizer_affects_search", "wall_time_s", "mlflow_run_id",
)
PROTOCOL_DEVIATIONS = "protocol_deviations"
"""Comma-separated baseline settings a trial ran that differ from the paper's protocol ("" when none)."""


def results_table(results: Any) -> pd.DataFrame:
    """Rows for every trial of a finished (or partly failed) Tune run."""
    rows = []
    for result in results:
        config = TrialConfig.parse(result.config["trial"])
        metrics = result.metrics or {}
        row = {
            "trial_id": metrics.get("trial_id", Path(result.path).name),
            "status": "ERROR" if result.error else "TERMINATED",
            "error": f"{type(result.error).__name__}: {result.error}"[:1000] if result.error else "",
            "task": config.task,
            "baseline": config.baseline,
            "regularizer": config.regularizer.name,
            "seed": config.seed,
        }
        row.update({column: metrics.get(column) if not result.error else None for column in SUMMARY_COLUMNS})
        row[PROTOCOL_DEVIATIONS] = str(metrics.get(PROTOCOL_DEVIATIONS) or "")
        row.update({f"config.{key}": value for key, value in config.flat().items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    config_columns = [c for c in table.columns if c.startswith("config.")]
    table[config_columns] = table[config_columns].astype(str)  # mixed-type params stay readable in Parquet
    baseline_order = {name: index for index, name in enumerate(baselines.names())}  # the paper's order, not alphabetical
    order = table.assign(_baseline=table["baseline"].map(baseline_order))
    order = order.sort_values(["task", "_baseline", "regularizer", "seed"], kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` as Parquet atomically (a temp file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), partial)
    os.replace(partial, path)


def read_table(path: Path) -> pd.DataFrame:
    """A results table written by :func:`write_table`; corrupt or foreign files are a one-line UserError."""
    try:
        table = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException, ValueError) as error:
        kind = "unreadable" if isinstance(error, PermissionError) else "not a Parquet file (corrupt or truncated)"
        raise UserError(f"{path} is {kind}; pass the results.parquet an 'ignite-mbo sweep' wrote") from None
    missing = [c for c in ("trial_id", "status", "task", "baseline", "regularizer", "seed") if c not in table.columns]
    if missing:
        raise UserError(f"{path} is not a results table of 'ignite-mbo sweep' (no {', '.join(missing)} column); "
                        "pass the results.parquet a sweep wrote")
    if PROTOCOL_DEVIATIONS not in table.columns:
        table[PROTOCOL_DEVIATIONS] = ""
    return table
